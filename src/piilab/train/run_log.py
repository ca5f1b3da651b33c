"""The run's log: train_log.csv and the loss plot, each checkpoint's time and tokens, the progress bar."""

from __future__ import annotations

import csv
import logging
import math
import time
from pathlib import Path
from typing import Any

from transformers import ProgressCallback, TrainerCallback

from piilab.io import atomic_write, give_usual_modes, read_json, write_json

log = logging.getLogger(__name__)

from piilab.train.trainer import LAYER_LOSS, LOG_COLUMNS


def log_rows(log_history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per logged step from a Trainer's `log_history`, train and eval entries merged."""
    rows: dict[int, dict[str, Any]] = {}
    names = {"loss": "loss", "learning_rate": "lr", "eval_loss": "eval_loss", "grad_norm": "grad_norm",
             "mean_token_accuracy": "token_accuracy", "num_tokens": "tokens", "epoch": "epoch"}
    for entry in log_history:
        if "loss" not in entry and "eval_loss" not in entry:
            continue  # the end-of-training summary
        row = rows.setdefault(int(entry["step"]), {"step": int(entry["step"])})
        for key, column in names.items():
            if key in entry and entry[key] is not None:
                row[column] = entry[key]
        for key, value in entry.items():
            if key.removeprefix("eval_").startswith(LAYER_LOSS) and value is not None:
                row[key] = value
    return [rows[step] for step in sorted(rows)]


def layer_loss_columns(rows: list[dict[str, Any]]) -> list[str]:
    """The per-layer loss columns present in log rows: train ones by layer, then eval ones."""
    found = {key for row in rows for key in row if key.removeprefix("eval_").startswith(LAYER_LOSS)}
    return sorted(found, key=lambda k: (k.startswith("eval_"), int(k.rpartition("L")[2])))


def write_log_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    columns = [*LOG_COLUMNS, *layer_loss_columns(rows)]
    with atomic_write(path) as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _fmt(row.get(k)) for k in columns})


def _fmt(value: Any) -> Any:
    if isinstance(value, float):
        return f"{value:.6g}"
    return "" if value is None else value


def read_log_csv(path: Path) -> list[dict[str, float]]:
    """The rows of a train_log.csv, numbers parsed, empty cells left out."""
    with open(path, newline="", encoding="utf-8") as handle:
        return [{k: float(v) for k, v in row.items() if v != ""} for row in csv.DictReader(handle)]


def plot_loss(rows: list[dict[str, Any]], path: Path) -> None:
    """Training (and evaluation) loss against the step, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=120)
    for key, label, style in (("loss", "train", "-"), ("eval_loss", "eval", "o-")):
        points = [(r["step"], r[key]) for r in rows if key in r and math.isfinite(float(r[key]))]
        if points:
            ax.plot(*zip(*points), style, label=label, markersize=3)
    ax.set_xlabel("step")
    ax.set_ylabel("loss (answer tokens)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    with atomic_write(path, "wb") as handle:
        fig.savefig(handle, format="png")
    plt.close(fig)


PROGRESS_FILE = "piilab_progress.json"  # in each checkpoint: the run's time and tokens so far


def checkpoint_progress(checkpoint: Path | None) -> dict[str, float]:
    """Training seconds and real tokens of a run up to a checkpoint (zero for a fresh run).

    Checkpoints of an older piilab have no progress file: their tokens come from the logged
    history, their seconds are unknown (0).
    """
    if checkpoint is None:
        return {"train_seconds": 0.0, "real_tokens": 0}
    path = checkpoint / PROGRESS_FILE
    if path.is_file():
        saved = read_json(path)
        return {"train_seconds": float(saved["train_seconds"]), "real_tokens": int(saved["real_tokens"])}
    history = read_json(checkpoint / "trainer_state.json").get("log_history", [])
    return {"train_seconds": 0.0, "real_tokens": logged_tokens(history)}


def logged_tokens(history: list[dict[str, Any]]) -> int:
    """The cumulative real tokens of the last logged training step."""
    return int(max((entry["num_tokens"] for entry in history if "num_tokens" in entry), default=0))


class RunLogCallback(TrainerCallback):
    """Rewrites RUN_DIR/train_log.csv from the trainer's log history on rank 0, at each log
    while that is cheap, and always at each checkpoint and at the end.

    Rewriting (not appending) means a resumed run's log holds each step once: the history comes
    back from the checkpoint, so steps logged after it by the killed run are dropped. The file
    grows with the run and piilab logs every step, so past `ALWAYS` log entries (a rewrite then
    takes milliseconds) the next is skipped until `OVERHEAD` times the last one's duration has
    passed: the log then takes about 1% of the run. Shorter logs are written at every log, so a
    killed run's file holds every step it logged.
    Also times the steps, for a steady tokens/s that leaves out the first (warm-up) step, and
    writes the run's seconds and tokens so far into each checkpoint, so a resumed run's figures
    continue from there instead of restarting at 0.
    """

    OVERHEAD = 100
    ALWAYS = 500

    def __init__(self, path: Path):
        self.path = path
        self.step_times: list[tuple[int, float]] = []
        self._last_write = (-math.inf, 0.0)  # (perf_counter at its end, its duration)
        self.prior_seconds = 0.0  # training time of earlier sessions, up to the resumed checkpoint
        self.started: float | None = None

    def session_seconds(self) -> float:
        return time.perf_counter() - self.started if self.started is not None else 0.0

    def on_train_begin(self, args, state, control, **kwargs):
        self.started = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self.step_times.append((state.global_step, time.perf_counter()))

    def on_log(self, args, state, control, logs=None, **kwargs):
        ended, took = self._last_write
        if len(state.log_history) <= self.ALWAYS or time.perf_counter() - ended >= self.OVERHEAD * took:
            self.write(state)

    def on_save(self, args, state, control, **kwargs):
        self.write(state)
        checkpoint = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if state.is_world_process_zero and checkpoint.is_dir():
            write_json(checkpoint / PROGRESS_FILE, {
                "train_seconds": round(self.prior_seconds + self.session_seconds(), 3),
                "real_tokens": logged_tokens(state.log_history)})
            give_usual_modes(checkpoint)  # safetensors writes the weights 0600

    def on_train_end(self, args, state, control, **kwargs):
        self.write(state)

    def write(self, state) -> None:
        if state.is_world_process_zero:
            started = time.perf_counter()
            write_log_csv(self.path, log_rows(state.log_history))
            ended = time.perf_counter()
            self._last_write = (ended, ended - started)


class QuietProgress(ProgressCallback):
    """The Trainer's progress bar, with the latest loss in the bar instead of a printed dict per log."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and self.training_bar is not None and logs:
            shown = {k: f"{logs[k]:.4g}" for k in ("loss", "eval_loss") if isinstance(logs.get(k), float)}
            if shown:
                self.training_bar.set_postfix(shown, refresh=False)


class ThreadWatchCallback(TrainerCallback):
    """After each optimizer step, lets the process's thread watch look at the load again
    (piilab.runtime.look_again, as decoding does between batches)."""

    def on_step_end(self, args, state, control, **kwargs):
        from piilab import runtime

        runtime.look_again()
