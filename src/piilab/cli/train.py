"""`piilab train`: LoRA / QLoRA instruction tuning; the flags are TrainConfig's fields."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from piilab.cli._args import add_threads_arg
from piilab.errors import PiilabError
from piilab.train import (
    CONFIG_FILE,
    EXIT_SCHEDULES,
    SCHEDULERS,
    TrainConfig,
    resume_config,
    train,
)

DEFAULTS = {f.name: f.default for f in dataclasses.fields(TrainConfig)}


def _help(text: str, name: str) -> str:
    default = DEFAULTS.get(name)
    return text if default in (None, False, dataclasses.MISSING) else f"{text} (default: {default})"


def register(subparsers) -> None:
    # Flags the user does not give stay out of the namespace, so `--resume` can lay only the
    # given ones over the run's saved config.
    parser = subparsers.add_parser(
        "train", argument_default=argparse.SUPPRESS,
        help="LoRA/QLoRA-tune a model on a dataset folder; RUN_DIR becomes the adapter",
        description="Fine-tune a LoRA adapter (loss on the answer only, EOS learned) with TRL's "
                    "SFTTrainer. Under torchrun or accelerate launch it runs data-parallel.",
    )
    add = parser.add_argument
    add("--model", metavar="SPEC", help=_help("base model: embedded name, local folder or hub id", "model"))
    add("--data", metavar="DIR", help="dataset folder from `piilab data build` (or a .jsonl file)")
    add("--out", metavar="RUN_DIR", required=True, help="run folder; becomes the adapter folder")
    lora = parser.add_argument_group("LoRA")
    lora.add_argument("--lora-r", type=int, help=_help("rank", "lora_r"))
    lora.add_argument("--lora-alpha", type=int, help=_help("scaling numerator (update scaled by alpha/r)", "lora_alpha"))
    lora.add_argument("--lora-dropout", type=float, help=_help("dropout on the LoRA input", "lora_dropout"))
    lora.add_argument("--target-modules", help=_help("'all-linear' or comma-separated module names", "target_modules"))
    lora.add_argument("--qlora", action="store_true", help="4-bit NF4 base model with bitsandbytes (CUDA only)")
    lora.add_argument("--full-finetune", action="store_true",
                      help="train every weight but the embeddings and output head instead of LoRA; "
                           "RUN_DIR becomes a model folder (use it as --model)")
    sched = parser.add_argument_group("schedule")
    length = sched.add_mutually_exclusive_group()
    length.add_argument("--epochs", type=float, help="passes over the training set (default 1)")
    length.add_argument("--max-steps", type=int, help="optimizer steps (instead of --epochs)")
    sched.add_argument("--lr", type=float, help=_help("peak learning rate", "lr"))
    sched.add_argument("--scheduler", choices=SCHEDULERS, help=_help("learning-rate schedule", "scheduler"))
    sched.add_argument("--warmup", type=float, help=_help("warm-up: fraction of steps (< 1) or steps", "warmup"))
    sched.add_argument("--batch-size", type=int, help=_help("sequences per device per micro-batch", "batch_size"))
    sched.add_argument("--grad-accum", type=int, help=_help("micro-batches per optimizer step", "grad_accum"))
    sched.add_argument("--seed", type=int, help=_help("seed for adapter init, dropout and data order", "seed"))
    speed = parser.add_argument_group("sequences and speed")
    speed.add_argument("--max-length", type=int,
                       help=_help("longest prompt+answer in tokens; longer records are skipped", "max_length"))
    speed.add_argument("--packing", action="store_true", help="pack records into max-length rows (padding-free)")
    speed.add_argument("--group-by-length", action=argparse.BooleanOptionalAction,
                       help=_help("batch records of similar length together", "group_by_length"))
    speed.add_argument("--share-prefix", action=argparse.BooleanOptionalAction,
                       help="run the prompt prefix a batch shares once per batch (exact; default: on "
                            "for CPU training, off on a GPU)")
    speed.add_argument("--compact-activations", action=argparse.BooleanOptionalAction,
                       help="store float32 activations for backward in bf16 (default: on for CPU "
                            "training, off on a GPU)")
    speed.add_argument("--bf16", choices=["auto", "on", "off"],
                       help=_help("bf16 autocast where the CPU or GPU supports it", "bf16"))
    speed.add_argument("--cpu-memory", choices=["lean", "fast"],
                       help=_help("lean: peak RSS first (glibc returns large blocks); fast: about 2x faster "
                                  "CPU steps for about 1.25-1.5x the peak memory", "cpu_memory"))
    speed.add_argument("--gradient-checkpointing", action="store_true",
                       help="recompute activations in backward: less memory, more time")
    speed.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"], help=_help("where to train", "device"))
    add_threads_arg(speed)
    early = parser.add_argument_group("early-exit training (LayerSkip's loss, no layer dropout)")
    early.add_argument("--exit-layers", metavar="L,L",
                       help="also train the logit lens at these decoder layers (1..N-1), e.g. 16,24")
    early.add_argument("--exit-loss-weight", type=float, metavar="W",
                       help=_help("loss = (L_N + W * sum of exit losses) / (1 + W * k)", "exit_loss_weight"))
    early.add_argument("--exit-loss-schedule", choices=EXIT_SCHEDULES,
                       help=_help("W at every step, or rising linearly from 0 to W", "exit_loss_schedule"))
    run = parser.add_argument_group("checkpoints and evaluation")
    run.add_argument("--resume", action="store_true",
                     help="continue RUN_DIR from its last checkpoint to the same final step "
                          "(other flags default to the run's saved config)")
    run.add_argument("--save-steps", type=int, help=_help("checkpoint every N steps", "save_steps"))
    run.add_argument("--eval-steps", type=int, help="eval loss on held-out records every N steps")
    run.add_argument("--eval-records", type=int, help=_help("held-out records for --eval-steps", "eval_records"))
    parser.add_argument("--prompt-format", choices=["auto", "chat", "plain"],
                        help=_help("chat template (auto: when the tokenizer has one) or plain", "prompt_format"))
    parser.add_argument("--trust-remote-code", action="store_true",
                        help="allow a model folder's own Python code to run")
    parser.set_defaults(func=run_train)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The TrainConfig for the flags given; with --resume, laid over the run's saved config."""
    given = {k: v for k, v in vars(args).items() if k in DEFAULTS}
    if given.get("resume") and (Path(args.out) / CONFIG_FILE).exists():
        return resume_config(args.out, given)
    if "data" not in given:
        raise PiilabError("--data is required (unless --resume finds a saved run in --out)")
    return TrainConfig(**given)


def run_train(args) -> int:
    config = config_from_args(args)
    summary = train(config)
    rate = summary.steady_tokens_per_second or summary.tokens_per_second
    print(f"trained {summary.global_step} steps on {summary.train_records} records "
          f"({summary.skipped_records} skipped) in {summary.train_seconds:.0f} s, "
          f"{rate:.0f} real tokens/s, {summary.precision}")
    loss = "n/a" if summary.train_loss is None else f"{summary.train_loss:.4f}"
    evaluated = "" if summary.eval_loss is None else f", eval loss {summary.eval_loss:.4f}"
    print(f"train loss {loss}{evaluated}; {'model' if config.full_finetune else 'adapter'} in {summary.run_dir}")
    return 0
