"""Training: LoRA / QLoRA (or full) fine-tuning with the loss on the answer only.

The stage is one function, `train(TrainConfig) -> RunSummary`, on TRL's SFTTrainer with PEFT.
What it guarantees, and why (docs/training.md has the long form):

- Records are tokenized here, not by TRL (`encode.py`): the prompt is rendered by the same
  `PromptFormat` that generate/extract/eval use and tokenized *alone*, exactly as at inference;
  the answer is tokenized after it and ends in EOS. Labels are -100 on every prompt token.
- The pad token is not EOS when the tokenizer has another special token to pad with.
- RUN_DIR is itself the PEFT adapter folder, with `base_model_name_or_path` set to the user's
  spec, so `--adapter RUN_DIR` and `--model RUN_DIR` both work; it also holds the tokenizer, the
  exact config, the prompt format, the log, a loss plot and the final metrics. With
  `--full-finetune` it is a plain model folder instead (safetensors), used as `--model RUN_DIR`.
- Hub tokens are read by huggingface_hub from the environment only; nothing here writes one.

Modules: `config` (TrainConfig), `encode` (records -> ids), `run_folder` (fresh or resumed),
`prepare` (precision, LoRA/QLoRA, the trainer), `trainer` (piilab's additions to TRL's trainer),
`run` (the stage), `merge` (adapter -> plain model).
"""

from piilab.train.config import (
    CONFIG_FILE,
    EXIT_SCHEDULES,
    LOG_FILE,
    METRICS_FILE,
    SCHEDULERS,
    RunSummary,
    TrainConfig,
    load_run_config,
    resume_config,
)
from piilab.train.encode import IGNORE_INDEX, encode_record, encode_records
from piilab.train.merge import merge
from piilab.train.run import train

__all__ = [
    "CONFIG_FILE", "EXIT_SCHEDULES", "IGNORE_INDEX", "LOG_FILE", "METRICS_FILE", "SCHEDULERS",
    "RunSummary", "TrainConfig", "encode_record", "encode_records", "load_run_config", "merge",
    "resume_config", "train",
]
