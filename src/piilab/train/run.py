"""The training stage: `train(TrainConfig) -> RunSummary` on TRL's SFTTrainer with PEFT."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from piilab.errors import PiilabError
from piilab.io import give_usual_modes, output_folder, read_json, write_json
from piilab.runtime import let_the_heap_keep_blocks_again, peak_rss_mb
from piilab.train.config import (
    CHECKPOINTS,
    LOG_FILE,
    METRICS_FILE,
    PLOT_FILE,
    RunSummary,
    TrainConfig,
)
from piilab.train.prepare import build_trainer
from piilab.train.run_folder import (
    checkpoint_step,
    data_fingerprint,
    is_final_checkpoint,
    remove_checkpoints_after,
    write_run_files,
)

log = logging.getLogger(__name__)



def train(config: TrainConfig, callbacks: Sequence[Any] = ()) -> RunSummary:
    """Fine-tune a LoRA (or QLoRA) adapter on a dataset folder; RUN_DIR becomes the adapter
    (with `full_finetune`, the whole model).

    `callbacks` are extra transformers TrainerCallbacks (tests use one to kill a run).
    """
    # Both checked before the model loads, not after; --data first, as trying --out creates it.
    if not Path(config.data).exists():
        raise PiilabError(f"{config.data}: --data: no such dataset folder or file")
    with output_folder(config.out, "--out"):
        try:
            return _train(config, callbacks)
        finally:  # a failed or interrupted run too: a notebook or `piilab run` decodes on after it
            let_the_heap_keep_blocks_again()


def _train(config: TrainConfig, callbacks: Sequence[Any]) -> RunSummary:
    """`train` once --data and --out are checked."""
    from piilab.train.run_log import (
        checkpoint_progress,
        log_rows,
        plot_loss,
        write_log_csv,
    )

    run = build_trainer(config, callbacks)
    trainer, run_dir = run.trainer, Path(config.out)
    trainer.accelerator.wait_for_everyone()  # every rank has checked RUN_DIR before rank 0 writes
    if trainer.is_world_process_zero() and run.resume_from is None:
        write_run_files(run_dir, config, runtime=run.runtime, tokenizer=trainer.processing_class,
                        fmt=run.fmt, data=data_fingerprint(config.data))
    if trainer.is_world_process_zero() and config.resume:
        remove_checkpoints_after(run_dir / CHECKPOINTS, run.resume_from)
    if run.resume_from is not None:
        log.info("resuming from %s", run.resume_from)
    # Time and tokens continue from the checkpoint, so the log and the metrics count the run.
    prior = checkpoint_progress(run.resume_from)
    trainer.real_tokens = prior["real_tokens"]
    run.run_log.prior_seconds = prior["train_seconds"]

    started = time.perf_counter()
    finished_before = run.resume_from is not None and is_final_checkpoint(run.resume_from)
    if finished_before:
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
    session_tokens = trainer.real_tokens - prior["real_tokens"]
    total_seconds = prior["train_seconds"] + (0.0 if finished_before else seconds)
    summary = RunSummary(
        run_dir=str(run_dir), global_step=trainer.state.global_step,
        train_loss=_train_loss(trainer.state.log_history), eval_loss=eval_loss,
        train_records=run.stats.kept, skipped_records=run.stats.skipped_long + run.stats.skipped_empty,
        trainable_parameters=run.runtime["trainable_parameters"], precision=run.runtime["precision"],
        train_seconds=round(total_seconds, 3), real_tokens=trainer.real_tokens,
        tokens_per_second=_rate(session_tokens, seconds) or _rate(trainer.real_tokens, total_seconds),
        steady_tokens_per_second=_steady_rate(run.run_log.step_times, trainer.state.log_history),
        peak_rss_mb=round(peak_rss_mb(), 1), world_size=run.runtime["world_size"],
        resumed_from_step=checkpoint_step(run.resume_from),
    )
    saved = _saved_summary(run_dir / METRICS_FILE) if finished_before else None
    if saved is not None:
        # A finished run resumed trains nothing: its first session's figures (and file) stand.
        summary = dataclasses.replace(saved, resumed_from_step=summary.resumed_from_step)
    if trainer.is_world_process_zero():
        rows = log_rows(trainer.state.log_history)
        write_log_csv(run_dir / LOG_FILE, rows)
        plot_loss(rows, run_dir / PLOT_FILE)
        if saved is None:
            write_json(run_dir / METRICS_FILE, asdict(summary))
        give_usual_modes(run_dir)  # safetensors writes the weights 0600
    trainer.accelerator.wait_for_everyone()
    log.info("trained %d steps in %.0f s (%.0f real tokens/s); %s in %s", summary.global_step,
             summary.train_seconds, summary.tokens_per_second,
             "model" if config.full_finetune else "adapter", run_dir)
    return summary



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



def _rate(tokens: int, seconds: float) -> float:
    return round(tokens / seconds, 2) if tokens > 0 and seconds > 0 else 0.0


def _saved_summary(path: Path) -> RunSummary | None:
    """The RunSummary a finished session wrote, if it is there and readable."""
    try:
        return RunSummary(**read_json(path))
    except (PiilabError, TypeError):
        return None


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
