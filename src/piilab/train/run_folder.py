"""RUN_DIR before and after training: fresh or resumed, the exact config, the data's fingerprint."""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from piilab.errors import PiilabError
from piilab.io import read_json, write_json
from piilab.train.config import CHECKPOINTS, CONFIG_FILE, TrainConfig, load_run_config

log = logging.getLogger(__name__)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def data_fingerprint(data: str) -> dict[str, Any]:
    """Path and sha256 of the training split, recorded so --resume can check it is unchanged."""
    from piilab.data.dataset import dataset_file

    return {"path": str(Path(data).resolve()), "train_sha256": file_sha256(dataset_file(data, "train"))}


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
    if Path(config.data).is_file() and held_out_count(config) != held_out_count(saved):
        raise PiilabError(f"--resume: {config.data} is one file, so --eval-steps and --eval-records "
                          "decide which of its records are held out of training; keep the run's "
                          f"(eval_steps={saved.eval_steps!r}, eval_records={saved.eval_records!r})")
    saved_data = read_json(run_dir / CONFIG_FILE).get("data", {})
    now = data_fingerprint(config.data)
    if saved_data.get("train_sha256") and saved_data["train_sha256"] != now["train_sha256"]:
        raise PiilabError(f"--resume: {config.data} is not the training data this run started with")
    last = last_complete_checkpoint(run_dir / CHECKPOINTS)
    if last is None:
        log.warning("--resume: %s has no complete checkpoint yet; starting from step 0", run_dir)
    return last


def held_out_count(config: TrainConfig) -> int:
    """How many records --eval-steps asks to hold out of a single-file dataset (0: none)."""
    return config.eval_records if config.eval_steps is not None else 0


# Weights a checkpoint may hold: a LoRA adapter or a whole model (full fine-tuning), in any layout.
_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin", "model.safetensors",
            "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
_CHECKPOINT_NAME = re.compile(r"checkpoint-(\d+)")


def numbered_checkpoints(checkpoints: Path) -> list[tuple[int, Path]]:
    """(step, folder) of every checkpoint-N folder, newest first."""
    if not checkpoints.is_dir():
        return []
    found = [(int(match.group(1)), entry) for entry in checkpoints.iterdir()
             if entry.is_dir() and (match := _CHECKPOINT_NAME.fullmatch(entry.name))]
    return sorted(found, key=lambda pair: pair[0], reverse=True)


def is_complete_checkpoint(folder: Path) -> bool:
    """Whether the Trainer finished writing a checkpoint: it writes trainer_state.json last (after
    the weights, optimizer, scheduler and RNG states), so that file must read back whole."""
    try:
        state = json.loads((folder / "trainer_state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):  # missing, or cut short by a kill mid-write
        return False
    return isinstance(state, dict) and "global_step" in state and \
        any((folder / name).is_file() for name in _WEIGHTS)


def last_complete_checkpoint(checkpoints: Path) -> Path | None:
    """The newest checkpoint that --resume can continue from; newer ones a kill left half
    written are named in a warning and passed over (transformers would take the newest)."""
    for _, folder in numbered_checkpoints(checkpoints):
        if is_complete_checkpoint(folder):
            return folder
        log.warning("--resume: %s is incomplete (the run was stopped while saving it); "
                    "resuming from an earlier checkpoint", folder)
    return None


def remove_checkpoints_after(checkpoints: Path, resume_from: Path | None) -> None:
    """Delete the half-written checkpoints newer than the one a run resumes from: the Trainer
    would count them among the two it keeps, and delete a complete one instead."""
    start = checkpoint_step(resume_from)
    for step, folder in numbered_checkpoints(checkpoints):
        if step > start:
            log.info("removing the incomplete %s", folder)
            shutil.rmtree(folder, ignore_errors=True)


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
    """The exact config, the prompt format and settings and the tokenizer, written before the
    first step: everything later stages need, so the folder works from any directory."""
    from piilab.pii_prompt import data_settings, save_settings

    run_dir.mkdir(parents=True, exist_ok=True)
    # The data folder as an absolute path: a relative one means nothing from another directory.
    exact = {**asdict(config), "data": str(Path(config.data).resolve())}
    write_json(run_dir / CONFIG_FILE, {
        "config": exact, "runtime": runtime, "data": data, "versions": _versions(),
    })
    fmt.save(run_dir)
    save_settings(data_settings(config.data), run_dir)
    tokenizer.save_pretrained(run_dir)


def is_final_checkpoint(checkpoint: Path) -> bool:
    """Whether a checkpoint is the run's planned last step."""
    state = read_json(checkpoint / "trainer_state.json")
    return state["global_step"] >= state["max_steps"] > 0


def checkpoint_step(checkpoint: Path | None) -> int:
    """The step a checkpoint was saved at (0 for none)."""
    return int(checkpoint.name.rsplit("-", 1)[-1]) if checkpoint else 0
