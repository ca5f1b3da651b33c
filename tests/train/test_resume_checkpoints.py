"""--resume after a kill while a checkpoint was being written: the last complete one is used."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import pytest
from transformers import TrainerCallback

from piilab.io import write_jsonl
from piilab.train import TrainConfig, train
from piilab.train.run_folder import is_complete_checkpoint, last_complete_checkpoint

TASK = "Find the personal information in the text below. Answer: list each item.\n"


def write_data(folder: Path, n: int = 8) -> Path:
    """A small dataset folder of two alternating prompt/answer pairs."""
    folder.mkdir(parents=True, exist_ok=True)
    pairs = [{"prompt": TASK + "Jane Doe wrote to jane.doe@example.com.", "completion": "Jane Doe (NAME)"},
             {"prompt": TASK + "The capital of France is Paris.", "completion": "None"}]
    rows = [{"id": f"r{i}", "text": pairs[i % 2]["prompt"], "spans": [], **pairs[i % 2]} for i in range(n)]
    write_jsonl(folder / "train.jsonl", rows)
    return folder


def fake_checkpoint(checkpoints: Path, step: int, *, state: str | None, weights: bool = True) -> Path:
    """A checkpoint-N folder holding what --resume reads, or only part of it."""
    folder = checkpoints / f"checkpoint-{step}"
    folder.mkdir(parents=True)
    if weights:
        (folder / "adapter_model.safetensors").write_bytes(b"weights")
    if state is not None:
        (folder / "trainer_state.json").write_text(state)
    return folder


def test_the_newest_complete_checkpoint_is_chosen_and_the_incomplete_ones_named(tmp_path, caplog):
    checkpoints = tmp_path / "checkpoints"
    whole = json.dumps({"global_step": 1, "max_steps": 4})
    first = fake_checkpoint(checkpoints, 1, state=whole)
    fake_checkpoint(checkpoints, 10, state=whole)  # numbered, not sorted as text: 10 > 9
    fake_checkpoint(checkpoints, 11, state=None)  # killed before the trainer state was written
    fake_checkpoint(checkpoints, 12, state='{"global_st')  # killed while writing it
    fake_checkpoint(checkpoints, 13, state=whole, weights=False)
    (checkpoints / "checkpoint-14").mkdir()  # killed as soon as the folder appeared
    with caplog.at_level(logging.WARNING):
        assert last_complete_checkpoint(checkpoints) == checkpoints / "checkpoint-10"
    for step in (11, 12, 13, 14):
        assert f"checkpoint-{step} is incomplete" in caplog.text
    assert is_complete_checkpoint(first)
    assert last_complete_checkpoint(tmp_path / "none") is None


class CrashWhileSaving(TrainerCallback):
    """Cuts checkpoint `step`'s trainer state short and dies, as a kill during the save would."""

    def __init__(self, step: int):
        self.step = step

    def on_save(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            (Path(args.output_dir) / f"checkpoint-{self.step}" / "trainer_state.json").write_text("{")
            raise KeyboardInterrupt(f"killed while saving checkpoint-{self.step}")


def test_a_run_killed_while_saving_resumes_from_the_last_complete_checkpoint(tmp_path, tiny_llama_dir,
                                                                              caplog):
    run = tmp_path / "run"
    config = TrainConfig(data=str(write_data(tmp_path / "data")), out=str(run), model=str(tiny_llama_dir),
                         max_steps=3, save_steps=1, batch_size=4, lora_r=4, lora_dropout=0.0, seed=0)
    with pytest.raises(KeyboardInterrupt):
        train(config, callbacks=[CrashWhileSaving(2)])
    with caplog.at_level(logging.WARNING):
        resumed = train(dataclasses.replace(config, resume=True))
    assert "checkpoint-2 is incomplete" in caplog.text
    assert (resumed.resumed_from_step, resumed.global_step) == (1, 3)
    # the half-written checkpoint was removed, and written again whole when step 2 came round
    assert is_complete_checkpoint(run / "checkpoints" / "checkpoint-2")
    assert json.loads((run / "checkpoints" / "checkpoint-2" / "trainer_state.json").read_text())[
        "global_step"] == 2
