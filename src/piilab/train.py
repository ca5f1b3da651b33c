"""LoRA / QLoRA instruction tuning (`piilab train`) and adapter merging (`piilab merge`).

The stage is one function, `train(TrainConfig) -> RunSummary`, on TRL's SFTTrainer with PEFT.
What it guarantees, and why (docs/training.md has the long form):

- Records are tokenized here, not by TRL: the prompt is rendered by the same `PromptFormat` that
  generate/extract/eval use and tokenized *alone*, exactly as at inference; the answer is
  tokenized after it and ends in EOS. So the tokens the model is trained on after the prompt are
  the ones it will be asked to continue, nothing merges across the boundary, and no BOS or EOS
  is doubled. Labels are -100 on every prompt token (and on padding).
- The pad token is not EOS when the tokenizer has another special token to pad with (labels come
  from masks, not from the pad id, so EOS stays learned either way).
- RUN_DIR is itself the PEFT adapter folder, with `base_model_name_or_path` set to the user's
  spec, so `--adapter RUN_DIR` and `--model RUN_DIR` both work; it also holds the tokenizer, the
  exact config, the prompt format, the log, a loss plot and the final metrics. With
  `--full-finetune` it is a plain model folder instead (safetensors), used as `--model RUN_DIR`.
- Hub tokens are read by huggingface_hub from the environment only; nothing here writes one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from piilab.errors import PiilabError
from piilab.io import read_json, write_json

log = logging.getLogger(__name__)

CONFIG_FILE = "train_config.json"
LOG_FILE = "train_log.csv"
PLOT_FILE = "loss.png"
METRICS_FILE = "train_metrics.json"
CHECKPOINTS = "checkpoints"
SCHEDULERS = ("linear", "cosine", "constant", "constant_with_warmup", "cosine_with_min_lr")
EXIT_SCHEDULES = ("constant", "linear")
PAD_CANDIDATES = ("<|endoftext|>", "<|finetune_right_pad_id|>", "<|pad|>", "<pad>", "[PAD]", "<unk>")
# Fields that may differ between a run and its --resume: none of them changes the plan.
IGNORE_INDEX = -100
RESUME_FREE = frozenset({"resume", "device", "out", "data", "eval_steps", "eval_records", "save_steps",
                         "cpu_memory"})


@dataclass
class TrainConfig:
    """Everything `piilab train` takes; one field per CLI flag (`lora_r` is `--lora-r`)."""

    data: str
    """Dataset folder with train.jsonl (and test.jsonl / valid.jsonl for --eval-steps), or one .jsonl file."""
    out: str
    """RUN_DIR: becomes the adapter folder; checkpoints go to RUN_DIR/checkpoints."""
    model: str = "smollm2-135m"
    """Base model spec: an embedded name, a local folder or a hub id (not an adapter)."""
    lora_r: int = 16
    """LoRA rank."""
    lora_alpha: int = 32
    """LoRA scaling numerator (the update is scaled by alpha / r)."""
    lora_dropout: float = 0.05
    """Dropout on the LoRA input."""
    target_modules: str = "all-linear"
    """'all-linear' (every linear layer but the output head) or comma-separated module names."""
    qlora: bool = False
    """Load the base model in 4-bit NF4 with bitsandbytes (CUDA only) and train LoRA on top."""
    full_finetune: bool = False
    """Train every weight but the token embeddings and the output head, with no adapter; RUN_DIR
    becomes a plain model folder (use it as --model). The LoRA settings are then unused."""
    epochs: float | None = None
    """Passes over the training set (default 1 when --max-steps is not given)."""
    max_steps: int | None = None
    """Optimizer steps; overrides --epochs."""
    lr: float = 3e-4
    """Peak learning rate (AdamW)."""
    scheduler: str = "cosine"
    """Learning-rate schedule after warm-up: linear, cosine, constant, ..."""
    warmup: float = 0.03
    """Warm-up: a fraction of the steps when below 1, else a number of steps."""
    batch_size: int = 8
    """Sequences per device per micro-batch."""
    grad_accum: int = 1
    """Micro-batches per optimizer step."""
    max_length: int = 512
    """Longest prompt + answer in tokens; longer records are skipped (and counted), never cut."""
    packing: bool = False
    """Pack several records into each max_length row (padding-free; sequences stay separate)."""
    group_by_length: bool = False
    """Batch records of similar length together: less padding, but on template-made data a batch
    is then one template, and the model learns worse (docs/training.md, "Random batches")."""
    bf16: str = "auto"
    """bf16 autocast: auto (where the CPU or GPU supports it), on or off."""
    cpu_memory: str = "lean"
    """lean: glibc returns freed blocks of 128 KiB or more to the OS during training (peak RSS
    under 3 GB at batch 8 x 256 tokens); fast: glibc's own heap, about 2x faster CPU steps for
    about 1.25-1.5x the peak RSS. See `return_large_blocks_to_the_os`."""
    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass: less memory, about a third more time."""
    share_prefix: bool = True
    """Run the prompt prefix all rows of a batch share (the instructions) once per batch; exact."""
    compact_activations: bool = True
    """Keep float32 activations saved for backward as bf16 (half their memory; math unchanged)."""
    exit_layers: list[int] = field(default_factory=list)
    """Early-exit training: also train the logit lens at these decoder layers (1..N-1; '16,24' too)."""
    exit_loss_weight: float = 1.0
    """W in (L_N + W * sum of exit losses) / (1 + W * k), k = number of exit layers."""
    exit_loss_schedule: str = "constant"
    """constant (W at every step) or linear (W rises from 0 at the first step to W at the last)."""
    seed: int = 42
    """Seed for the adapter's initial weights, dropout and data order."""
    resume: bool = False
    """Continue from the last checkpoint in RUN_DIR/checkpoints to the same final step."""
    eval_steps: int | None = None
    """Evaluate the loss on held-out records every N steps (and at the end); off by default."""
    eval_records: int = 64
    """At most this many held-out records for --eval-steps (valid.jsonl, else test.jsonl)."""
    save_steps: int = 50
    """Write a resumable checkpoint every N steps (the last two are kept)."""
    prompt_format: str = "auto"
    """auto (the chat template when the tokenizer has one), chat or plain."""
    device: str = "auto"
    """auto, cpu, cuda or mps."""
    trust_remote_code: bool = False
    """Allow a model folder's own Python code to run."""

    def __post_init__(self) -> None:
        self.exit_layers = parse_exit_layers(self.exit_layers)
        checks = [
            (self.lora_r >= 1, "--lora-r must be at least 1"),
            (self.lora_alpha > 0, "--lora-alpha must be positive"),
            (0 <= self.lora_dropout < 1, "--lora-dropout must be in [0, 1)"),
            (bool(self.target_modules.strip(" ,")), "--target-modules is empty"),
            (not (self.full_finetune and self.qlora), "--full-finetune trains full-precision weights: "
             "it cannot be combined with --qlora"),
            (self.epochs is None or self.epochs > 0, "--epochs must be positive"),
            (self.max_steps is None or self.max_steps >= 1, "--max-steps must be at least 1"),
            (self.epochs is None or self.max_steps is None, "give --epochs or --max-steps, not both"),
            (self.lr > 0, "--lr must be positive"),
            (self.scheduler in SCHEDULERS, f"--scheduler must be one of {', '.join(SCHEDULERS)}"),
            (self.warmup >= 0 and (self.warmup < 1 or float(self.warmup).is_integer()),
             "--warmup is a fraction in [0, 1) or a whole number of steps"),
            (self.batch_size >= 1, "--batch-size must be at least 1"),
            (self.grad_accum >= 1, "--grad-accum must be at least 1"),
            (self.max_length >= 16, "--max-length must be at least 16"),
            (self.bf16 in ("auto", "on", "off"), "--bf16 must be auto, on or off"),
            (self.cpu_memory in ("lean", "fast"), "--cpu-memory must be lean or fast"),
            (self.eval_steps is None or self.eval_steps >= 1, "--eval-steps must be at least 1"),
            (self.eval_records >= 1, "--eval-records must be at least 1"),
            (self.save_steps >= 1, "--save-steps must be at least 1"),
            (self.prompt_format in ("auto", "chat", "plain"), "--prompt-format must be auto, chat or plain"),
            (self.device in ("auto", "cpu", "cuda", "mps"), "--device must be auto, cpu, cuda or mps"),
            (all(layer >= 1 for layer in self.exit_layers), "--exit-layers are 1-based: each must be at least 1"),
            (self.exit_loss_weight > 0, "--exit-loss-weight must be positive"),
            (self.exit_loss_schedule in EXIT_SCHEDULES,
             f"--exit-loss-schedule must be one of {', '.join(EXIT_SCHEDULES)}"),
        ]
        for ok, message in checks:
            if not ok:
                raise PiilabError(message)
        if self.packing:
            self.group_by_length = False  # packed rows are all max_length long: nothing to group

    @property
    def target(self) -> str | list[str]:
        """PEFT's `target_modules`: the 'all-linear' shorthand or a list of names."""
        if self.target_modules.strip() == "all-linear":
            return "all-linear"
        return [name.strip() for name in self.target_modules.split(",") if name.strip()]

    def plan_differences(self, other: TrainConfig) -> list[str]:
        """Fields (other than RESUME_FREE ones) whose values differ from another config's."""
        mine, theirs = asdict(self), asdict(other)
        return [k for k in mine if k not in RESUME_FREE and mine[k] != theirs[k]]

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise PiilabError(f"unknown training settings: {', '.join(unknown)}")
        return cls(**values)


def parse_exit_layers(value: Any) -> list[int]:
    """Exit layers from a list of whole numbers or a '16,24' string, deduplicated and ascending."""
    parts = value
    if isinstance(value, str):
        parts = [part.strip() for part in value.split(",") if part.strip()]
    elif _is_whole(value):
        parts = [value]
    if not isinstance(parts, (list, tuple)) or not all(_is_whole(part) for part in parts):
        raise PiilabError(f"--exit-layers takes layer numbers such as 16,24, not {value!r}")
    return sorted({int(part) for part in parts})


def _is_whole(value: Any) -> bool:
    if isinstance(value, str):
        return value.removeprefix("-").isdigit()  # a negative number parses; the range check names it
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class RunSummary:
    """What a finished training run reports (also written to RUN_DIR/train_metrics.json)."""

    run_dir: str
    global_step: int
    train_loss: float | None
    eval_loss: float | None
    train_records: int
    skipped_records: int
    trainable_parameters: int
    precision: str
    train_seconds: float
    real_tokens: int
    tokens_per_second: float
    steady_tokens_per_second: float | None
    peak_rss_mb: float
    world_size: int
    resumed_from_step: int


# ---------------------------------------------------------------- records -> token ids


@dataclass(frozen=True)
class EncodeStats:
    kept: int
    skipped_long: int
    skipped_empty: int


def encode_record(record: dict[str, Any], tokenizer, fmt) -> dict[str, list[int]]:
    """Token ids and labels for one prompt-completion record: labels -100 on the prompt.

    The prompt is rendered and tokenized exactly as generation will (`fmt.render`, with the
    format's own `add_special_tokens`); the answer is tokenized on its own and ends in EOS.
    """
    prompt_ids = tokenizer(
        fmt.render(tokenizer, record["prompt"]), add_special_tokens=fmt.add_special_tokens
    )["input_ids"]
    answer_ids = tokenizer(record["completion"], add_special_tokens=False)["input_ids"]
    answer_ids = [*answer_ids, tokenizer.eos_token_id]
    return {
        "input_ids": [*prompt_ids, *answer_ids],
        "labels": [IGNORE_INDEX] * len(prompt_ids) + answer_ids,
    }


def encode_records(records: Iterable[dict[str, Any]], tokenizer, fmt, max_length: int) -> tuple[list[dict], EncodeStats]:
    """Encode records, skipping (and counting) those without an answer or longer than max_length."""
    rows, long_, empty = [], 0, 0
    for record in records:
        if not record.get("prompt") or record.get("completion") in (None, ""):
            empty += 1
            continue
        row = encode_record(record, tokenizer, fmt)
        if len(row["input_ids"]) > max_length:
            long_ += 1
            continue
        rows.append(row)
    return rows, EncodeStats(len(rows), long_, empty)


def read_split(data: str | os.PathLike, split: str) -> list[dict[str, Any]]:
    """The checked records of one split of a dataset folder (or of a single .jsonl file)."""
    from piilab.dataset import read_records

    return read_records(data, split)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def data_fingerprint(data: str) -> dict[str, Any]:
    """Path and sha256 of the training split, recorded so --resume can check it is unchanged."""
    from piilab.dataset import dataset_file

    return {"path": str(Path(data).resolve()), "train_sha256": file_sha256(dataset_file(data, "train"))}


# ---------------------------------------------------------------- decisions, made once and logged


def choose_pad_token(tokenizer) -> str | None:
    """A pad token that is not EOS, from tokens the vocabulary already has (no resizing).

    Returns the token to set, or None to keep the current one (already distinct, or nothing else
    to use: then pad == EOS stays, which is harmless here because labels come from masks).
    """
    eos, pad = tokenizer.eos_token, tokenizer.pad_token
    if pad is not None and pad != eos:
        return None
    vocab = tokenizer.get_vocab()
    for token in (tokenizer.unk_token, *PAD_CANDIDATES):
        if token and token != eos and token in vocab and token != tokenizer.bos_token:
            return token
    return None


def choose_precision(device_type: str, bf16: str) -> tuple[bool, bool, str]:
    """(bf16 autocast, fp16 autocast, reason) for a device and the --bf16 setting."""
    from piilab.runtime import native_bf16

    if bf16 == "off":
        return False, False, "--bf16 off: float32"
    if device_type == "cuda":
        if native_bf16("cuda"):
            return True, False, f"bf16 autocast ({'--bf16 on' if bf16 == 'on' else 'auto'}: the GPU supports bf16)"
        if bf16 == "on":
            raise PiilabError("--bf16 on: this GPU does not support bf16 (use --bf16 auto for fp16)")
        return False, True, "fp16 autocast (auto: the GPU lacks bf16)"
    if device_type == "cpu":
        if native_bf16("cpu"):
            return True, False, f"bf16 autocast ({'--bf16 on' if bf16 == 'on' else 'auto'}: the CPU has avx512_bf16/amx_bf16)"
        if bf16 == "on":
            log.warning("--bf16 on: this CPU has no native bf16 (avx512_bf16/amx_bf16); it will be slow")
            return True, False, "bf16 autocast (--bf16 on, emulated: this CPU has no native bf16)"
        return False, False, "float32 (auto: this CPU has no native bf16)"
    if bf16 == "on":
        raise PiilabError(f"--bf16 on is not supported on {device_type}")
    return False, False, f"float32 (auto: no bf16 autocast on {device_type})"


def qlora_kwargs(device_type: str, compute_bf16: bool) -> dict[str, Any]:
    """from_pretrained arguments that load the base model in 4-bit NF4 (CUDA only)."""
    if device_type != "cuda":
        raise PiilabError(
            f"--qlora needs a CUDA GPU: bitsandbytes 4-bit kernels do not run on {device_type}; "
            "train plain LoRA here (drop --qlora)"
        )
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise PiilabError("--qlora needs bitsandbytes: pip install 'piilab[qlora]'") from None
    import torch
    from transformers import BitsAndBytesConfig

    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    return {
        "quantization_config": BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16 if compute_bf16 else torch.float16,
        ),
        "device_map": {"": local_rank},
    }


def lora_config(config: TrainConfig):
    from peft import LoraConfig

    return LoraConfig(
        r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
        target_modules=config.target, bias="none", task_type="CAUSAL_LM",
    )


def sft_config(config: TrainConfig, run_dir: Path, *, device_type: str, bf16: bool, fp16: bool,
               has_eval: bool):
    """TRL's SFTConfig for this run. Every TRL default that differs from piilab's is set here."""
    from trl import SFTConfig

    steps = {"max_steps": config.max_steps} if config.max_steps else {"num_train_epochs": config.epochs or 1.0}
    warmup = config.warmup if config.warmup < 1 else int(config.warmup)
    evaluate = has_eval and config.eval_steps is not None
    return SFTConfig(
        output_dir=str(run_dir / CHECKPOINTS),
        **steps,
        learning_rate=config.lr,
        lr_scheduler_type=config.scheduler,
        warmup_steps=warmup,
        weight_decay=0.0,
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.batch_size,
        gradient_accumulation_steps=config.grad_accum,
        # TRL defaults bf16 and gradient checkpointing on; piilab decides both explicitly.
        bf16=bf16,
        fp16=fp16,
        activation_checkpointing=config.gradient_checkpointing,
        use_cpu=device_type == "cpu",
        seed=config.seed,
        data_seed=config.seed,
        # Records are already tokenized and no longer than max_length (see encode_records),
        # so TRL truncates nothing; with packing, max_length is the row length.
        max_length=config.max_length if config.packing else None,
        packing=config.packing,
        packing_strategy="bfd",
        train_sampling_strategy="group_by_length" if config.group_by_length else "random",
        logging_steps=1,
        logging_first_step=True,
        save_strategy="steps",
        save_steps=config.save_steps,
        save_total_limit=2,
        eval_strategy="steps" if evaluate else "no",
        eval_steps=config.eval_steps if evaluate else None,
        prediction_loss_only=True,
        report_to="none",
        push_to_hub=False,
        hub_token=None,
        dataloader_num_workers=0,  # collation is cheap; workers would copy the process on CPU
        dataloader_pin_memory=device_type == "cuda",
        ddp_find_unused_parameters=False,  # every trainable weight is used in every step
        disable_tqdm=False,
    )


# ---------------------------------------------------------------- run folder


def _is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def load_run_config(run_dir: str | os.PathLike) -> TrainConfig:
    """The TrainConfig a run folder was trained with."""
    saved = read_json(Path(run_dir) / CONFIG_FILE)
    return TrainConfig.from_dict(saved["config"])


def resume_config(run_dir: str | os.PathLike, given: dict[str, Any]) -> TrainConfig:
    """A run's saved config with `given` settings laid over it, for `--resume`."""
    saved = asdict(load_run_config(run_dir))
    return TrainConfig.from_dict({**saved, **given, "out": str(run_dir), "resume": True})


def _holds_files(run_dir: Path) -> bool:
    """Anything in RUN_DIR but an empty checkpoints folder (which the Trainer makes on every rank)."""
    if not run_dir.is_dir():
        return False
    for entry in run_dir.iterdir():
        if entry.name != CHECKPOINTS or not entry.is_dir() or any(entry.iterdir()):
            return True
    return False


def check_run_dir(config: TrainConfig) -> Path | None:
    """Decide, before anything is written, whether this run starts fresh or resumes.

    Returns the checkpoint to resume from (None to start at step 0). A run folder that already
    holds files needs --resume; --resume checks that the plan has not changed.
    """
    from transformers.trainer_utils import get_last_checkpoint

    run_dir = Path(config.out)
    if not config.resume:
        if _holds_files(run_dir):
            raise PiilabError(f"{run_dir} already holds files: pass --resume to continue that run, "
                              "or choose another --out")
        return None
    if not (run_dir / CONFIG_FILE).exists():
        if _holds_files(run_dir):
            raise PiilabError(f"--resume: {run_dir} holds files but no {CONFIG_FILE}; not a run folder")
        log.info("--resume: %s holds no run yet; starting one", run_dir)
        return None
    saved = load_run_config(run_dir)
    changed = config.plan_differences(saved)
    if changed:
        details = ", ".join(f"{k}={getattr(saved, k)!r}" for k in changed)
        raise PiilabError(f"--resume must keep the run's plan; these differ from the saved one: {details}")
    saved_data = read_json(run_dir / CONFIG_FILE).get("data", {})
    now = data_fingerprint(config.data)
    if saved_data.get("train_sha256") and saved_data["train_sha256"] != now["train_sha256"]:
        raise PiilabError(f"--resume: {config.data} is not the training data this run started with")
    checkpoints = run_dir / CHECKPOINTS
    last = get_last_checkpoint(str(checkpoints)) if checkpoints.is_dir() else None
    if last is None:
        log.warning("--resume: %s has no checkpoint yet; starting from step 0", run_dir)
        return None
    return Path(last)


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    from piilab import __version__

    out = {"piilab": __version__, "python": sys.version.split()[0]}
    for name in ("torch", "transformers", "peft", "trl", "accelerate", "datasets"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            pass
    return out


def write_run_files(run_dir: Path, config: TrainConfig, *, runtime: dict[str, Any], tokenizer, fmt,
                    data: dict[str, Any]) -> None:
    """The exact config, the prompt format and the tokenizer, written before the first step."""
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(run_dir / CONFIG_FILE, {
        "config": asdict(config), "runtime": runtime, "data": data, "versions": _versions(),
    })
    fmt.save(run_dir)
    tokenizer.save_pretrained(run_dir)


def freeze_vocabulary(model) -> None:
    """Keep the token embeddings and the output head (often one tied matrix) as they are.

    They hold a fifth of a small model's weights, their gradient is one of the largest products
    of a step, and every exit layer's logit lens reads through the head: full fine-tuning
    trains the decoder blocks and norms around a fixed vocabulary instead.
    """
    for module in (model.get_input_embeddings(), model.get_output_embeddings()):
        if module is not None:
            module.requires_grad_(False)


def set_adapter_base(model, spec: str) -> None:
    """Make the saved adapter_config.json name the user's spec, so the folder resolves anywhere."""
    from piilab.models import EMBEDDED

    path = Path(spec).expanduser()
    base = spec if spec in EMBEDDED or not path.exists() else str(path.resolve())
    for peft_config in model.peft_config.values():
        peft_config.base_model_name_or_path = base


def save_without_hub_lookup(model) -> None:
    """Make the PEFT model's saves decide `save_embedding_layers` without asking the Hub.

    PEFT's "auto" asks the Hub whether the base model's config.json exists (to check for a
    resized vocabulary) whenever the base is not a local folder: for an embedded spec like
    `smollm2-135m` that is a pointless network call and a warning at every checkpoint. piilab
    never resizes the vocabulary, so the embeddings are saved exactly when LoRA targets them.
    """
    import functools

    from peft.utils.other import EMBEDDING_LAYER_NAMES

    names: set[str] = set()
    for peft_config in model.peft_config.values():
        targets = peft_config.target_modules or ()
        names |= {targets} if isinstance(targets, str) else set(targets)  # "all-linear" or names
    embeddings = any(name in EMBEDDING_LAYER_NAMES for name in names)
    model.save_pretrained = functools.partial(model.save_pretrained, save_embedding_layers=embeddings)


M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number
GLIBC_MMAP_THRESHOLD_MAX = 32 << 20  # the ceiling of glibc's own dynamic threshold (64-bit)
_threshold_set = False  # whether return_large_blocks_to_the_os changed it in this process


def return_large_blocks_to_the_os(threshold: int = 128 << 10) -> bool:
    """Make glibc serve allocations of `threshold` bytes or more with mmap, for the whole process.

    glibc raises its mmap threshold each time a large block is freed, so a training step's
    activations soon come from the heap, whose freed holes are kept rather than returned. With
    the prompt prefix shared, a step allocates many mid-sized tensors (the rows' own tokens): at
    a 1 MiB threshold the heap grew by ~0.8 GB over four SmolLM2 steps while live tensors stayed
    at the model's 0.57 GB. Peak RSS of a step (batch 8, 256 tokens) against step time, by
    threshold: 1 MiB 3.3 GB / 3.1 s, 512 KiB 3.0 GB / 4.9 s, 256 KiB 2.9 GB / 5.1 s, 128 KiB
    2.85 GB / 5.7 s (fresh pages cost page faults). 128 KiB keeps a step under 3 GB with a margin
    (the benchmark's 256 KiB run peaked at 2.97 GB). A user who would rather have the speed
    passes `--cpu-memory fast` (this is then not called) or sets glibc's own
    `MALLOC_MMAP_THRESHOLD_` (e.g. 1048576), which is left alone. Returns whether it applied
    (glibc Linux only).
    """
    import ctypes
    import platform

    global _threshold_set
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    if os.environ.get("MALLOC_MMAP_THRESHOLD_"):
        return False
    try:
        _threshold_set = bool(ctypes.CDLL(None).mallopt(M_MMAP_THRESHOLD, threshold))
    except (OSError, AttributeError):
        return False
    return _threshold_set


def let_the_heap_keep_blocks_again() -> None:
    """After training: a high mmap threshold again, as glibc's dynamic one reaches in a long run.

    The low training threshold makes decoding in the same process (`piilab run`, the demo)
    about 30% slower, and nothing there needs the memory back. Only undoes what
    `return_large_blocks_to_the_os` did.
    """
    global _threshold_set
    if _threshold_set:
        import ctypes

        ctypes.CDLL(None).mallopt(M_MMAP_THRESHOLD, GLIBC_MMAP_THRESHOLD_MAX)
        _threshold_set = False


def peak_rss_mb() -> float:
    """Peak resident memory of this process in MiB (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


# ---------------------------------------------------------------- the stage


@dataclass
class TrainingRun:
    """A trainer ready to run, and what was decided on the way (nothing written yet)."""

    config: TrainConfig
    trainer: Any
    run_log: Any
    resume_from: Path | None
    stats: EncodeStats
    runtime: dict[str, Any]
    fmt: Any
    has_eval: bool


def build_trainer(config: TrainConfig, callbacks: Sequence[Any] = ()) -> TrainingRun:
    """Load the model, encode the data and set up the trainer; writes nothing to RUN_DIR."""
    from datasets import Dataset
    from transformers import ProgressCallback

    from piilab import arch, models
    from piilab.formatting import default_format
    from piilab.runtime import choose_runtime
    from piilab.trainer import PiilabSFTTrainer, QuietProgress, RunLogCallback, check_exit_layers

    run_dir = Path(config.out)
    resume_from = check_run_dir(config)
    resolved = models.resolve(config.model)
    if resolved.adapter:
        raise PiilabError(f"{config.model} is an adapter folder: train on a base model "
                          "(or merge it first with `piilab merge`)")

    runtime = choose_runtime(config.device)
    bf16, fp16, precision = choose_precision(runtime.device.type, config.bf16)
    if runtime.device.type == "cpu" and config.cpu_memory == "lean" and return_large_blocks_to_the_os():
        log.debug("glibc: blocks of 128 KiB or more are mmap-ed and returned to the OS when freed")
    log.info("training precision: %s", precision)
    # Loaded on the CPU in the device's weight dtype; the Trainer moves it to this process's
    # device (cuda:LOCAL_RANK under torchrun/accelerate). QLoRA places it while quantizing.
    load_kwargs = qlora_kwargs(runtime.device.type, bf16) if config.qlora else {"device": "cpu"}
    # Full fine-tuning updates the weights themselves: float32 keeps small updates from rounding
    # away (bf16 autocast still does the math); LoRA keeps the base in the device's dtype.
    dtype = "float32" if config.full_finetune else str(runtime.dtype).removeprefix("torch.")
    model, tokenizer = models.load_model(
        config.model, dtype=dtype,
        trust_remote_code=config.trust_remote_code, **load_kwargs,
    )
    if config.exit_layers:
        check_exit_layers(config.exit_layers, arch.num_layers(model))
        log.info("early-exit loss at layers %s of %d, weight %g (%s)",
                 ",".join(map(str, config.exit_layers)), arch.num_layers(model),
                 config.exit_loss_weight, config.exit_loss_schedule)
    if config.full_finetune:
        freeze_vocabulary(model)
    if config.qlora:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=config.gradient_checkpointing)

    pad = choose_pad_token(tokenizer)
    if pad is not None:
        log.info("pad token: %r (was %r; the pad must not be EOS %r)", pad, tokenizer.pad_token,
                 tokenizer.eos_token)
        tokenizer.pad_token = pad
    elif tokenizer.pad_token in (None, tokenizer.eos_token):
        log.warning("no pad token other than EOS in this vocabulary; padding with EOS "
                    "(harmless: labels come from masks, so EOS is still learned)")
        tokenizer.pad_token = tokenizer.eos_token
    fmt = default_format(tokenizer, config.prompt_format)

    rows, stats = encode_records(read_split(config.data, "train"), tokenizer, fmt, config.max_length)
    _report_encoding("train", stats, config.max_length)
    if not rows:
        raise PiilabError(f"{config.data}: no usable training records")
    eval_rows = _eval_rows(config, tokenizer, fmt) if config.eval_steps is not None else []
    lengths = [len(r["input_ids"]) for r in rows]
    log.info("training on %d records (%d tokens, %d in answers; longest %d)", len(rows), sum(lengths),
             sum(sum(1 for t in r["labels"] if t != IGNORE_INDEX) for r in rows), max(lengths))

    args = sft_config(config, run_dir, device_type=runtime.device.type, bf16=bf16, fp16=fp16,
                      has_eval=bool(eval_rows))
    run_log = RunLogCallback(run_dir / LOG_FILE)
    with models.peft_wrap_quietly():
        trainer = PiilabSFTTrainer(
            model=model, args=args, train_dataset=Dataset.from_list(rows),
            eval_dataset=Dataset.from_list(eval_rows) if eval_rows else None,
            processing_class=tokenizer, peft_config=None if config.full_finetune else lora_config(config),
            callbacks=[run_log, *callbacks], share_prefix=config.share_prefix,
            compact_activations=config.compact_activations, exit_layers=config.exit_layers,
            exit_loss_weight=config.exit_loss_weight, exit_loss_schedule=config.exit_loss_schedule,
        )
    trainer.remove_callback(ProgressCallback)
    trainer.add_callback(QuietProgress())
    trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
    world = trainer.accelerator.num_processes
    if config.full_finetune:
        log.info("full fine-tuning (embeddings and output head frozen): %d trainable parameters; "
                 "%d process(es)", trainable, world)
    else:
        set_adapter_base(trainer.model, config.model)
        save_without_hub_lookup(trainer.model)
        log.info("LoRA r=%d alpha=%d on %s: %d trainable parameters; %d process(es)",
                 config.lora_r, config.lora_alpha, config.target_modules, trainable, world)
    facts = {"device": str(trainer.args.device), "runtime": runtime.reason, "precision": precision,
             "world_size": world, "trainable_parameters": trainable, "pad_token": tokenizer.pad_token,
             "eos_token": tokenizer.eos_token, "records": asdict(stats)}
    return TrainingRun(config, trainer, run_log, resume_from, stats, facts, fmt, bool(eval_rows))


def train(config: TrainConfig, callbacks: Sequence[Any] = ()) -> RunSummary:
    """Fine-tune a LoRA (or QLoRA) adapter on a dataset folder; RUN_DIR becomes the adapter
    (with `full_finetune`, the whole model).

    `callbacks` are extra transformers TrainerCallbacks (tests use one to kill a run).
    """
    from piilab.trainer import log_rows, plot_loss, write_log_csv

    run = build_trainer(config, callbacks)
    trainer, run_dir = run.trainer, Path(config.out)
    trainer.accelerator.wait_for_everyone()  # every rank has checked RUN_DIR before rank 0 writes
    if trainer.is_world_process_zero() and run.resume_from is None:
        write_run_files(run_dir, config, runtime=run.runtime, tokenizer=trainer.processing_class,
                        fmt=run.fmt, data=data_fingerprint(config.data))
    if run.resume_from is not None:
        log.info("resuming from %s", run.resume_from)

    started = time.perf_counter()
    if run.resume_from is not None and _finished(run.resume_from):
        # transformers would run one step past the plan from a final checkpoint; take it as is.
        log.info("%s is the run's final step: nothing left to train", run.resume_from.name)
        _load_final_checkpoint(trainer, run.resume_from)
    else:
        trainer.train(resume_from_checkpoint=str(run.resume_from) if run.resume_from else None)
    seconds = time.perf_counter() - started
    eval_loss = None
    if run.has_eval:
        evals = [r for r in log_rows(trainer.state.log_history) if "eval_loss" in r]
        if evals and evals[-1]["step"] == trainer.state.global_step:
            eval_loss = evals[-1]["eval_loss"]
        else:
            eval_loss = trainer.evaluate()["eval_loss"]

    trainer.save_model(str(run_dir))  # the adapter (or, full fine-tuning, the model) + tokenizer
    let_the_heap_keep_blocks_again()
    summary = RunSummary(
        run_dir=str(run_dir), global_step=trainer.state.global_step,
        train_loss=_train_loss(trainer.state.log_history), eval_loss=eval_loss,
        train_records=run.stats.kept, skipped_records=run.stats.skipped_long + run.stats.skipped_empty,
        trainable_parameters=run.runtime["trainable_parameters"], precision=run.runtime["precision"],
        train_seconds=round(seconds, 3), real_tokens=trainer.real_tokens,
        tokens_per_second=round(trainer.real_tokens / seconds, 2) if seconds > 0 else 0.0,
        steady_tokens_per_second=_steady_rate(run.run_log.step_times, trainer.state.log_history),
        peak_rss_mb=round(peak_rss_mb(), 1), world_size=run.runtime["world_size"],
        resumed_from_step=_checkpoint_step(run.resume_from),
    )
    if trainer.is_world_process_zero():
        rows = log_rows(trainer.state.log_history)
        write_log_csv(run_dir / LOG_FILE, rows)
        plot_loss(rows, run_dir / PLOT_FILE)
        write_json(run_dir / METRICS_FILE, asdict(summary))
    trainer.accelerator.wait_for_everyone()
    log.info("trained %d steps in %.0f s (%.0f real tokens/s); %s in %s", summary.global_step, seconds,
             summary.tokens_per_second, "model" if config.full_finetune else "adapter", run_dir)
    return summary


def _finished(checkpoint: Path) -> bool:
    state = read_json(checkpoint / "trainer_state.json")
    return state["global_step"] >= state["max_steps"] > 0


def _load_final_checkpoint(trainer, checkpoint: Path) -> None:
    """The trainer state and trained weights (adapter or whole model) of a checkpoint, without training."""
    from safetensors.torch import load_file
    from transformers import TrainerState

    trainer.state = TrainerState.load_from_json(str(checkpoint / "trainer_state.json"))
    adapter = checkpoint / "adapter_model.safetensors"
    if adapter.exists():
        from peft import set_peft_model_state_dict

        set_peft_model_state_dict(trainer.model, load_file(adapter))
        return
    # A tied output head is saved once, under the embeddings' name, so it is "missing" here.
    weights = load_file(checkpoint / "model.safetensors")
    unexpected = trainer.model.load_state_dict(weights, strict=False).unexpected_keys
    if unexpected:
        raise PiilabError(f"{checkpoint}: weights this model does not have: {', '.join(unexpected[:3])}")


def _report_encoding(split: str, stats: EncodeStats, max_length: int) -> None:
    total = stats.kept + stats.skipped_long + stats.skipped_empty
    if stats.skipped_long:
        log.warning("%s: skipped %d of %d records longer than --max-length %d tokens (raise it to keep them)",
                    split, stats.skipped_long, total, max_length)
    if stats.skipped_empty:
        log.warning("%s: skipped %d records without a prompt or completion", split, stats.skipped_empty)


def _eval_rows(config: TrainConfig, tokenizer, fmt) -> list[dict]:
    for split in ("valid", "validation", "test"):
        try:
            records = list(_take(read_split(config.data, split), config.eval_records))
        except PiilabError:
            continue
        rows, stats = encode_records(records, tokenizer, fmt, config.max_length)
        _report_encoding(split, stats, config.max_length)
        if rows:
            log.info("eval loss on %d %s records every %d steps", len(rows), split, config.eval_steps)
            return rows
    log.warning("--eval-steps: %s has no valid/test records; no evaluation", config.data)
    return []


def _take(items: Iterable[Any], n: int) -> Iterator[Any]:
    for i, item in enumerate(items):
        if i >= n:
            return
        yield item


def _train_loss(history: list[dict[str, Any]]) -> float | None:
    """The mean training loss over the last few logged steps (the run's, not a resumed session's)."""
    losses = [entry["loss"] for entry in history if "loss" in entry]
    if not losses:
        return None
    tail = losses[-min(10, len(losses)):]
    return round(sum(tail) / len(tail), 6)


def _steady_rate(step_times: list[tuple[int, float]], history: list[dict[str, Any]]) -> float | None:
    """Real tokens/s from the end of the first step of this session to the end of the last."""
    tokens = {int(e["step"]): e["num_tokens"] for e in history if "num_tokens" in e and "loss" in e}
    if len(step_times) < 2:
        return None
    (first_step, t0), (last_step, t1) = step_times[0], step_times[-1]
    if first_step not in tokens or last_step not in tokens or t1 <= t0:
        return None
    return round((tokens[last_step] - tokens[first_step]) / (t1 - t0), 2)


def _checkpoint_step(checkpoint: Path | None) -> int:
    return int(checkpoint.name.rsplit("-", 1)[-1]) if checkpoint else 0


# ---------------------------------------------------------------- merge


def merge(run_dir: str | os.PathLike, out: str | os.PathLike, *, device: str = "auto",
          dtype: str = "auto") -> Path:
    """Fold a run's LoRA adapter into its base model and save a plain model folder.

    The result (safetensors + tokenizer + prompt_format.json + merge_config.json) loads like any
    model, with no PEFT. It is written to a temporary folder and renamed into place.
    """
    from piilab import models
    from piilab.formatting import FILENAME as FORMAT_FILE

    run_dir, out = Path(run_dir), Path(out)
    if not (run_dir / "adapter_config.json").exists():
        if (run_dir / "config.json").exists():
            raise PiilabError(f"{run_dir}: already a plain model folder (a --full-finetune run); "
                              "use it as --model, there is nothing to merge")
        raise PiilabError(f"{run_dir}: not an adapter folder (no adapter_config.json)")
    if out.exists() and any(out.iterdir()):
        raise PiilabError(f"{out} already holds files; choose another --out")
    model, tokenizer = models.load_model(str(run_dir), device=device, dtype=dtype)
    merged = model.merge_and_unload()
    out.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        merged.save_pretrained(scratch, safe_serialization=True)
        tokenizer.save_pretrained(scratch)
        if (run_dir / FORMAT_FILE).exists():
            shutil.copy2(run_dir / FORMAT_FILE, scratch / FORMAT_FILE)
        write_json(scratch / "merge_config.json", {
            "adapter": str(run_dir.resolve()),
            "base": json.loads((run_dir / "adapter_config.json").read_text())["base_model_name_or_path"],
            "dtype": str(next(merged.parameters()).dtype).removeprefix("torch."),
        })
        if out.exists():
            out.rmdir()
        os.replace(scratch, out)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    log.info("merged %s into %s", run_dir, out)
    return out
