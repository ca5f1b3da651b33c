"""Everything decided before the first step: precision, QLoRA loading, LoRA and TRL settings, the trainer."""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from piilab.errors import PiilabError
from piilab.runtime import return_large_blocks_to_the_os
from piilab.train.config import CHECKPOINTS, LOG_FILE, TrainConfig
from piilab.train.encode import (
    IGNORE_INDEX,
    EncodeStats,
    choose_pad_token,
    encode_records,
    read_split,
)
from piilab.train.run_folder import check_run_dir

log = logging.getLogger(__name__)


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


def speed_settings(device_type: str, share_prefix: bool | None,
                   compact_activations: bool | None) -> tuple[bool, bool, str]:
    """(share_prefix, compact_activations, reason): the given values, or the device's defaults.

    Both were tuned on a 2-core CPU, where a step is compute- and memory-bound: sharing the
    prompt prefix skips most of the FLOPs and compact activations halve the saved tensors.
    A GPU has compute and memory to spare for a small model and waits on the host instead,
    and each adds host work per step: finding the shared prefix reads it back from the device
    (a sync), and the compaction hook runs Python for every tensor autograd saves.
    """
    on_cpu = device_type == "cpu"
    chosen = (on_cpu if share_prefix is None else share_prefix,
              on_cpu if compact_activations is None else compact_activations)
    where = "CPU: compute and memory are the limit" if on_cpu else \
        f"{device_type}: they add host work and a device sync per step"
    given = [name for name, value in (("--share-prefix", share_prefix),
                                      ("--compact-activations", compact_activations)) if value is not None]
    reason = (f"share prefix {'on' if chosen[0] else 'off'}, compact activations "
              f"{'on' if chosen[1] else 'off'} (auto on {where}"
              f"{'; given: ' + ', '.join(given) if given else ''})")
    return chosen[0], chosen[1], reason


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


def lora_layer_names(model) -> dict[str, type]:
    """Every module LoRA can wrap, by its full name: linear layers (GPT-2's Conv1D too),
    embeddings and convolutions, as PEFT supports them."""
    from torch import nn
    from transformers.pytorch_utils import Conv1D

    kinds = (nn.Linear, Conv1D, nn.Embedding, nn.Conv1d, nn.Conv2d, nn.Conv3d)
    return {name: type(module) for name, module in model.named_modules() if isinstance(module, kinds)}


def check_target_modules(model, target: str | list[str]) -> None:
    """Refuse --target-modules names that match no layer LoRA can wrap, naming the model's linear
    layers (PEFT would raise its own error with a traceback, after the data was encoded)."""
    if isinstance(target, str):  # 'all-linear'
        return
    from torch import nn
    from transformers.pytorch_utils import Conv1D

    layers = lora_layer_names(model)
    # PEFT's rule for a list of names: a module matches when its full name is, or ends in ".NAME"
    unknown = [t for t in target if not any(n == t or n.endswith("." + t) for n in layers)]
    if unknown:
        linear = sorted({name.rsplit(".", 1)[-1] for name, kind in layers.items()
                         if issubclass(kind, (nn.Linear, Conv1D))})
        raise PiilabError(f"--target-modules: no layer LoRA can wrap is named {', '.join(unknown)}; "
                          f"this model's linear layers are {', '.join(linear)} (or give all-linear)")


FAST_HEAP_LENGTH_STEP = 64
"""With `--cpu-memory fast` on a CPU (glibc's heap left alone), each batch is padded to a multiple
of this many tokens: batches of ever new lengths left holes of ever new sizes in the heap, which
grew through a run. The pii recipe's shape: peak RSS 7.4 GB against 9.2 GB over 50 steps, 5%
faster; RSS 7.1 GB at step 25 and 7.6 at step 150, where unpadded it reached 9.0 by step 50
(docs/training.md)."""


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
        # transformers' filter reads every micro-batch's loss back to test it for nan (a GPU
        # step waits for it); a loss that is nan or inf is logged as such instead of hidden
        logging_nan_inf_filter=False,
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
        # a batch copied to the GPU from pinned memory without waiting for the copy (or for the
        # GPU's queue) to finish
        accelerator_config={"non_blocking": device_type == "cuda"},
        ddp_find_unused_parameters=False,  # every trainable weight is used in every step
        disable_tqdm=False,
        pad_to_multiple_of=FAST_HEAP_LENGTH_STEP
        if device_type == "cpu" and config.cpu_memory == "fast" and not config.packing else None,
    )


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

    from piilab import models
    from piilab.models import arch
    from piilab.models.prompts import default_format
    from piilab.runtime import choose_runtime
    from piilab.train.dropout import use_mask_dropout
    from piilab.train.run_log import QuietProgress, RunLogCallback, ThreadWatchCallback
    from piilab.train.trainer import PiilabSFTTrainer, check_exit_layers

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
    share_prefix, compact, speed = speed_settings(runtime.device.type, config.share_prefix,
                                                  config.compact_activations)
    log.info("training speed-ups: %s", speed)
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
    if not config.full_finetune:
        check_target_modules(model, config.target)
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

    records, held_out = read_split(config.data, "train"), None
    if config.eval_steps is not None and Path(config.data).is_file():
        records, held_out = hold_out(records, config.eval_records, config.seed, config.data)
    rows, stats = encode_records(records, tokenizer, fmt, config.max_length)
    _report_encoding("train", stats, config.max_length)
    if not rows:
        raise PiilabError(f"{config.data}: no usable training records")
    eval_rows = _eval_rows(config, tokenizer, fmt, held_out) if config.eval_steps is not None else []
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
            callbacks=[run_log, *callbacks], share_prefix=share_prefix,
            compact_activations=compact, exit_layers=config.exit_layers,
            exit_loss_weight=config.exit_loss_weight, exit_loss_schedule=config.exit_loss_schedule,
        )
    dropout = "none" if config.full_finetune or not config.lora_dropout else "nn.Dropout"
    if runtime.device.type == "cpu" and dropout == "nn.Dropout":
        # nn.Dropout's CPU kernel draws a sample per element: about a fifth of a demo step
        dropout = f"masks from packed random bits on {use_mask_dropout(trainer.model)} LoRA layers"
        log.info("LoRA dropout: %s (CPU)", dropout)
    trainer.remove_callback(ProgressCallback)
    trainer.add_callback(QuietProgress())
    if runtime.device.type == "cpu":  # threads matter to a CPU run: look at the load again
        trainer.add_callback(ThreadWatchCallback())
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
             "speed_ups": speed, "lora_dropout": dropout, "world_size": world, "trainable_parameters": trainable, "pad_token": tokenizer.pad_token,
             "eos_token": tokenizer.eos_token, "records": asdict(stats)}
    return TrainingRun(config, trainer, run_log, resume_from, stats, facts, fmt, bool(eval_rows))



def _report_encoding(split: str, stats: EncodeStats, max_length: int) -> None:
    total = stats.kept + stats.skipped_long + stats.skipped_empty
    if stats.skipped_long:
        log.warning("%s: skipped %d of %d records longer than --max-length %d tokens (raise it to keep them)",
                    split, stats.skipped_long, total, max_length)
    if stats.skipped_empty:
        log.warning("%s: skipped %d records without a prompt or completion", split, stats.skipped_empty)


def hold_out(records: list[dict], wanted: int, seed: int, data: str) -> tuple[list[dict], list[dict]]:
    """(records to train on, records held out for --eval-steps) of a single .jsonl file, which has
    no valid or test split: `wanted` records (at most half) drawn with the seed, as `lens train`
    holds records out of a file. The rest keep their order."""
    n = min(wanted, len(records) // 2)
    if n < 1:
        raise PiilabError(f"{data}: --eval-steps: too few records to hold some out of this file for "
                          "the eval loss; give a dataset folder with a test split, or drop --eval-steps")
    order = list(range(len(records)))
    random.Random(seed).shuffle(order)
    chosen = set(order[:n])
    return ([r for i, r in enumerate(records) if i not in chosen],
            [records[i] for i in sorted(chosen)])


def _eval_rows(config: TrainConfig, tokenizer, fmt, held_out: list[dict] | None) -> list[dict]:
    """Encoded records for the eval loss: those held out of a single file, else the folder's
    valid, validation or test split (never records it trains on)."""
    if held_out is not None:
        rows, stats = encode_records(held_out, tokenizer, fmt, config.max_length)
        _report_encoding("held out", stats, config.max_length)
        log.info("eval loss on %d records held out of %s (not trained on) every %d steps",
                 len(rows), config.data, config.eval_steps)
        if not rows:
            log.warning("--eval-steps: no held-out record fits --max-length; no evaluation")
        return rows
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
