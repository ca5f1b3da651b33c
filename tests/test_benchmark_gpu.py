"""benchmarks/gpu.py --smoke: every part of the GPU benchmark runs on the CPU with tiny shapes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import load_script

pytestmark = pytest.mark.usefixtures("torch_settings_kept")  # the benchmarks set both

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu.py"


def load_benchmark():
    return load_script("gpu_benchmark", SCRIPT)


@pytest.mark.slow
def test_smoke_runs_every_part_side_by_side_and_prints_one_table(tmp_path, capsys):
    bench = load_benchmark()
    assert bench.main(["--smoke", "--out", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "gpu.json").read_text())
    runs = results["runs"]
    assert set(runs) == {name for part in bench.PARTS for name in bench.PART_WORKERS[part]}
    assert not [name for name, run in runs.items() if "error" in run]
    for name in ("piilab-lora", "trl-lora", "trl-lora-nogc", "piilab-qlora", "trl-qlora"):
        assert runs[name]["tokens_per_s"] > 0 and runs[name]["steps"] == (3 if "qlora" in name else 4), name
    assert runs["trl-lora"]["gradient_checkpointing"] and not runs["trl-lora-nogc"]["gradient_checkpointing"]
    for batch, d in runs["decode"]["batches"].items():
        assert len(d["piilab_s"]) == len(d["hf_s"]) == 3, batch
        # float32 on a CPU: piilab's exit-layer decoding is HF's truncated generate, token for token
        assert d["identical_rows"] == d["rows"] == 8 * 4, batch
    assert runs["eval"]["wall_s"] > 0
    assert runs["profile"]["steps"] == 2 and runs["profile"]["wall_ms_per_step"] > 0
    table = capsys.readouterr().out
    for row in ("135M LoRA r32 b4 tokens/s", "8B-shape QLoRA r16 b2 peak memory", "batch 2 (min / median / max)",
                "batch 8 (min / median / max)", "piilab eval, 4 layers x 8 records",
                "LoRA step under torch.profiler (2 steps)", "SMOKE"):
        assert row in table, row
    assert bench.table(results) in table  # --table DIR prints the same from gpu.json


@pytest.mark.slow
@pytest.mark.integration
def test_smoke_extract_part_runs_the_shipped_model_through_extract_speed(tmp_path, capsys):
    """The opt-in extract part: piilab-pii on the real SmolLM2 (the embedded one here; --gguf on
    a GPU machine), plain decoding against the merged speed-up, one table row each."""
    bench = load_benchmark()
    assert bench.main(["--smoke", "--parts", "extract", "--out", str(tmp_path)]) == 0
    run = json.loads((tmp_path / "gpu.json").read_text())["runs"]["extract"]
    assert [(r["config"], r["texts"], r["batch"]) for r in run["rows"]] == [("plain", 6, 32), ("merged", 6, 32)]
    assert all(r["texts_per_s"] > 0 for r in run["rows"])
    assert run["rows"][1]["identical"] == 1.0  # float32 merged weights: the same answers
    assert not (tmp_path / "work" / "data").exists()  # the real model needs no synthetic data
    [merged] = [line for line in capsys.readouterr().out.splitlines()
                if "extract 6 short texts (piilab-pii): merged, second look off, batch 32" in line]
    assert merged.endswith("x, 100.0% identical |")
