"""`piilab merge` on a one-step run of the tiny Llama: what it says and the folder it writes."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_resume_checkpoints import write_data

from piilab.cli import main
from piilab.train import TrainConfig, merge, train


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, tiny_llama_dir) -> Path:
    root = tmp_path_factory.mktemp("merge")
    config = TrainConfig(data=str(write_data(root / "data")), out=str(root / "run"), model=str(tiny_llama_dir),
                         max_steps=1, batch_size=4, lora_r=4, lora_dropout=0.0)
    train(config)
    return root / "run"


def test_merge_names_the_folder_it_wrote(run_dir, tmp_path, capsys):
    out = tmp_path / "merged"
    assert main(["merge", str(run_dir), "--out", str(out), "--device", "cpu"]) == 0
    assert capsys.readouterr().out.strip() == f"merged model in {out}"
    assert merge(run_dir, tmp_path / "again", device="cpu") == tmp_path / "again"
    assert (out / "model.safetensors").is_file() and (out / "merge_config.json").is_file()
