"""--eval-steps on a single .jsonl file: the eval loss is taken on records held out of training."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import asdict

import pytest

from piilab.errors import PiilabError
from piilab.io import write_jsonl
from piilab.train import TrainConfig
from piilab.train.prepare import build_trainer, hold_out
from piilab.train.run_folder import check_run_dir


def records(n: int) -> list[dict]:
    """n records, each with its own prompt, so token ids tell them apart."""
    return [{"id": f"r{i}", "text": f"Order {i} went to Jane Doe.", "spans": [],
             "prompt": f"Find the personal information: order {i} went to Jane Doe.",
             "completion": "Jane Doe (NAME)"} for i in range(n)]


def test_a_seeded_share_is_held_out_and_the_rest_kept_in_order():
    rows = records(10)
    train, held = hold_out(rows, 3, seed=0, data="d.jsonl")
    assert len(held) == 3 and len(train) == 7
    assert sorted(r["id"] for r in train + held) == sorted(r["id"] for r in rows)  # disjoint, all there
    assert [r["id"] for r in train] == [r["id"] for r in rows if r not in held]  # file order
    assert hold_out(rows, 3, seed=0, data="d.jsonl") == (train, held)  # the seed decides
    assert len(hold_out(rows, 64, seed=0, data="d.jsonl")[1]) == 5  # at most half
    with pytest.raises(PiilabError, match="d.jsonl: --eval-steps: too few records"):
        hold_out(rows[:1], 64, seed=0, data="d.jsonl")


def test_the_eval_loss_of_a_single_file_is_on_records_never_trained_on(tmp_path, tiny_llama_dir):
    data = tmp_path / "d.jsonl"
    write_jsonl(data, records(8))
    config = TrainConfig(data=str(data), out=str(tmp_path / "run"), model=str(tiny_llama_dir),
                         max_steps=1, eval_steps=1, eval_records=2, batch_size=4, lora_r=4)
    run = build_trainer(config)
    trained = {tuple(ids) for ids in run.trainer.train_dataset["input_ids"]}
    evaluated = {tuple(ids) for ids in run.trainer.eval_dataset["input_ids"]}
    assert len(evaluated) == 2 and len(trained) == 6 and not trained & evaluated
    assert run.has_eval and run.stats.kept == 6


def test_resume_keeps_the_held_out_records_of_a_single_file(tmp_path):
    data = tmp_path / "d.jsonl"
    write_jsonl(data, records(8))
    run = tmp_path / "run"
    saved = TrainConfig(data=str(data), out=str(run), eval_steps=5, eval_records=2)
    run.mkdir()
    (run / "train_config.json").write_text(json.dumps({"config": asdict(saved), "data": {}}))
    resumed = dataclasses.replace(saved, resume=True)
    assert check_run_dir(dataclasses.replace(resumed, eval_steps=10)) is None  # how often: free
    for changed in ({"eval_steps": None}, {"eval_records": 3}):
        with pytest.raises(PiilabError, match="decide which of its records are held out"):
            check_run_dir(dataclasses.replace(resumed, **changed))
    # a dataset folder's eval split is apart from its training split: both may change
    folder = tmp_path / "folder"
    folder.mkdir()
    write_jsonl(folder / "train.jsonl", records(8))
    (run / "train_config.json").write_text(json.dumps({"config": {**asdict(saved), "data": str(folder)},
                                                       "data": {}}))
    assert check_run_dir(dataclasses.replace(resumed, data=str(folder), eval_steps=None)) is None
