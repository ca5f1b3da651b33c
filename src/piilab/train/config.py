"""What a training run is given: TrainConfig (one field per `piilab train` flag) and what it reports."""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from piilab.errors import PiilabError
from piilab.io import read_json

CONFIG_FILE = "train_config.json"
LOG_FILE = "train_log.csv"
PLOT_FILE = "loss.png"
METRICS_FILE = "train_metrics.json"
CHECKPOINTS = "checkpoints"
SCHEDULERS = ("linear", "cosine", "constant", "constant_with_warmup", "cosine_with_min_lr")
EXIT_SCHEDULES = ("constant", "linear")
# Fields that may differ between a run and its --resume: none of them changes the plan.
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
    share_prefix: bool | None = None
    """Run the prompt prefix all rows of a batch share (the instructions) once per batch; exact.
    None: on for CPU training, off on a GPU (`prepare.speed_settings` says why)."""
    compact_activations: bool | None = None
    """Keep float32 activations saved for backward as bf16 (half their memory; math unchanged).
    None: on for CPU training, off on a GPU."""
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
    """At most this many held-out records for --eval-steps (valid.jsonl, else test.jsonl; for a
    single .jsonl file, records drawn with the seed and held out of training, at most half)."""
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
            (self.epochs is None or 0 < self.epochs < math.inf, "--epochs must be a positive finite number"),
            (self.max_steps is None or self.max_steps >= 1, "--max-steps must be at least 1"),
            (self.epochs is None or self.max_steps is None, "give --epochs or --max-steps, not both"),
            # inf passes `> 0` and nan fails it with a misleading message: both train to nan
            (_positive_finite(self.lr), "--lr must be a positive finite number"),
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
            (_positive_finite(self.exit_loss_weight), "--exit-loss-weight must be a positive finite number"),
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


def _positive_finite(value: float) -> bool:
    """Whether a number is above 0 and neither inf nor nan."""
    return math.isfinite(value) and value > 0


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


def load_run_config(run_dir: str | os.PathLike) -> TrainConfig:
    """The TrainConfig a run folder was trained with."""
    saved = read_json(Path(run_dir) / CONFIG_FILE)
    return TrainConfig.from_dict(saved["config"])


def resume_config(run_dir: str | os.PathLike, given: dict[str, Any]) -> TrainConfig:
    """A run's saved config with `given` settings laid over it, for `--resume`."""
    saved = asdict(load_run_config(run_dir))
    return TrainConfig.from_dict({**saved, **given, "out": str(run_dir), "resume": True})

