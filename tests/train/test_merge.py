"""`piilab merge` on a one-step run of the tiny Llama: what it says and the folder it writes."""

from __future__ import annotations

import os
import stat
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


def usual_modes() -> tuple[int, int]:
    """(folder, file) modes an output gets under this process's umask."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o777 & ~umask, 0o666 & ~umask


def modes(folder: Path) -> set[int]:
    """The permission bits of a folder and of everything under it."""
    return {stat.S_IMODE(p.stat().st_mode) for p in [folder, *folder.rglob("*")]}


def test_merged_and_trained_folders_get_the_usual_modes(run_dir, tmp_path):
    folder_mode, file_mode = usual_modes()
    out = merge(run_dir, tmp_path / "merged", device="cpu")
    assert stat.S_IMODE(out.stat().st_mode) == folder_mode  # not mkdtemp's 0700
    assert modes(out) == {folder_mode, file_mode}  # safetensors' 0600 weights included
    assert stat.S_IMODE((run_dir / "adapter_model.safetensors").stat().st_mode) == file_mode
    checkpoint = run_dir / "checkpoints" / "checkpoint-1"
    assert modes(checkpoint) == {folder_mode, file_mode}
