"""An eval folder is keyed by the content of its inputs: a changed test file or adapter at the same
path is decoded again, outputs of two inputs never mix, and a corrupt folder never locks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from piilab.cli import main
from piilab.eval import inputs as ev_inputs
from piilab.layers import decode as engine

pytestmark = pytest.mark.usefixtures("one_thread")

FAST = ["--metrics", "bleu,rouge,pii", "--max-new-tokens", "6", "--batch-size", "3", "--device", "cpu"]


def records(prefix: str, name: str = "Jane Doe") -> list[dict]:
    return [{"id": f"{prefix}{i}", "source": "synthetic", "prompt": f"Find PII: {name} {i} wrote.",
             "completion": f"{name} {i} (NAME)", "text": f"{name} {i} wrote.", "spans": None}
            for i in range(3)]


def write_test(folder: Path, rows: list[dict]) -> Path:
    folder.mkdir(exist_ok=True)
    (folder / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def write_adapter(base: Path, path: Path, seed: int) -> Path:
    """A random LoRA adapter on the tiny model, as `piilab train` would leave it."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base),
                           LoraConfig(r=4, lora_alpha=16, target_modules="all-linear",
                                      init_lora_weights=False))
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_" in name:
                param.normal_(0.0, 1.0)  # large enough that two seeds answer differently
    model.peft_config["default"].base_model_name_or_path = str(base)
    model.save_pretrained(path)
    return path


def run_eval(model: Path, data: Path, out: Path, *extra: str) -> int:
    return main(["eval", "--model", str(model), *extra, "--layers", "2,4", "--data", str(data),
                 "--out", str(out), *FAST])


def outputs_of(out: Path) -> dict[tuple, list[tuple[str, str, str]]]:
    """(id, output, reference) per (adapter, layer), after checking the folder holds this run's files only."""
    results = json.loads((out / "results.json").read_text())
    assert sorted(p.name for p in (out / "outputs").iterdir()) == sorted(
        Path(run["outputs"]).name for run in results["runs"])
    found = {}
    for run in results["runs"]:
        rows = [json.loads(line) for line in (out / run["outputs"]).read_text().splitlines()]
        found[run["adapter"], run["layer"]] = [(r["id"], r["output"], r["reference"]) for r in rows]
    return found


@pytest.fixture
def decoded(monkeypatch) -> list[int]:
    """The number of prompts decoded, call by call."""
    real, calls = engine.generate, []

    def spy(model, tokenizer, prompts, **kwargs):
        calls.append(len(prompts))
        return real(model, tokenizer, prompts, **kwargs)

    monkeypatch.setattr(engine, "generate", spy)
    return calls


def test_a_test_file_edited_in_place_is_decoded_again(tiny_llama_dir, tmp_path, decoded):
    data, out = write_test(tmp_path / "data", records("r")), tmp_path / "eval"
    assert run_eval(tiny_llama_dir, data, out) == 0
    write_test(data, records("r", name="Omar Roe"))  # same ids, other prompts and answers
    decoded.clear()
    assert run_eval(tiny_llama_dir, data, out) == 0
    assert decoded == [3]
    assert run_eval(tiny_llama_dir, data, tmp_path / "fresh") == 0
    assert outputs_of(out) == outputs_of(tmp_path / "fresh")
    assert all(ref.startswith("Omar Roe") for rows in outputs_of(out).values() for _, _, ref in rows)
    results = json.loads((out / "results.json").read_text())
    assert results["dataset"]["sha256"] == ev_inputs.sha256_file(data / "test.jsonl")
    assert results["inputs"]["dataset"]["sha256"] == results["dataset"]["sha256"]


def test_an_adapter_retrained_at_the_same_path_is_decoded_again(tiny_llama_dir, tmp_path, decoded):
    data, out, adapter = write_test(tmp_path / "data", records("r")), tmp_path / "eval", tmp_path / "run"
    vanilla = ["--model", str(tiny_llama_dir)]
    write_adapter(tiny_llama_dir, adapter, seed=1)
    assert run_eval(tiny_llama_dir, data, out, "--adapter", str(adapter), *vanilla) == 0
    first = outputs_of(out)
    before = json.loads((out / "results.json").read_text())

    write_adapter(tiny_llama_dir, adapter, seed=2)
    decoded.clear()
    assert run_eval(tiny_llama_dir, data, out, "--adapter", str(adapter), *vanilla) == 0
    assert decoded == [3]  # the tuned model's three samples; the vanilla model's are kept
    after = json.loads((out / "results.json").read_text())
    assert before["runs"][2:] == after["runs"][2:]  # the vanilla runs: not even rescored
    assert run_eval(tiny_llama_dir, data, tmp_path / "fresh", "--adapter", str(adapter), *vanilla) == 0
    assert outputs_of(out) == outputs_of(tmp_path / "fresh")
    assert [run["id"] for run in after["runs"]] == [
        run["id"] for run in json.loads((tmp_path / "fresh" / "results.json").read_text())["runs"]]
    assert first[str(adapter), 4] != outputs_of(out)[str(adapter), 4]  # the adapters answer differently
    tuned = after["inputs"]["models"][0]
    assert tuned["adapter"] == str(adapter) and set(tuned["fingerprint"]["adapter"]) >= {
        "adapter_model.safetensors", "adapter_config.json"}
    assert tuned["fingerprint_sha256"] != before["inputs"]["models"][0]["fingerprint_sha256"]


def test_data_rebuilt_with_new_ids_replaces_the_old_outputs(tiny_llama_dir, tmp_path, decoded):
    data, out = write_test(tmp_path / "data", records("r")), tmp_path / "eval"
    assert run_eval(tiny_llama_dir, data, out, "--limit", "2") == 0
    write_test(data, records("s"))
    assert run_eval(tiny_llama_dir, data, out, "--limit", "2") == 0
    assert [rid for rid, _, _ in outputs_of(out)[None, 4]] == ["s0", "s1"]
    # --overwrite starts again even when nothing changed
    decoded.clear()
    assert run_eval(tiny_llama_dir, data, out, "--limit", "2", "--overwrite") == 0
    assert decoded == [2]
    assert [rid for rid, _, _ in outputs_of(out)[None, 2]] == ["s0", "s1"]


def test_stray_rows_in_an_outputs_file_are_dropped_not_a_key_error(tmp_path):
    from piilab.eval.run import finalize_outputs

    path = tmp_path / "run-L2.jsonl"
    rows = [{"id": "b", "output": "x"}, {"id": "old", "output": "y"}, {"id": "a", "output": "z"},
            {"id": "b", "output": "again"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    finalize_outputs(path, {"a": 0, "b": 1})
    assert [json.loads(line) for line in path.read_text().splitlines()] == [
        {"id": "a", "output": "z"}, {"id": "b", "output": "x"}]


@pytest.mark.parametrize("garbage", ["{not json", "[1, 2]"])
def test_a_corrupt_results_json_is_scored_again_not_a_lock(tiny_llama_dir, tmp_path, decoded, garbage):
    data, out = write_test(tmp_path / "data", records("r")), tmp_path / "eval"
    assert run_eval(tiny_llama_dir, data, out) == 0
    good = json.loads((out / "results.json").read_text())
    (out / "results.json").write_text(garbage)
    decoded.clear()
    assert run_eval(tiny_llama_dir, data, out) == 0
    assert decoded == []  # the outputs were sound: only the scores are computed again
    again = json.loads((out / "results.json").read_text())
    for results in (good, again):
        results.pop("created")
        for run in results["runs"]:
            run.pop("timing")
    assert again == good


def test_a_corrupt_eval_config_says_what_to_do_and_overwrite_clears_it(tiny_llama_dir, tmp_path, capsys):
    from helpers import one_line_error

    data, out = write_test(tmp_path / "data", records("r")), tmp_path / "eval"
    assert run_eval(tiny_llama_dir, data, out) == 0
    (out / "eval_config.json").write_text("{torn")
    capsys.readouterr()
    one_line_error(capsys, ["eval", "--model", str(tiny_llama_dir), "--layers", "2,4", "--data",
                            str(data), "--out", str(out), *FAST], "pass --overwrite")
    assert (out / "results.json").exists()  # nothing deleted without --overwrite
    assert run_eval(tiny_llama_dir, data, out, "--overwrite") == 0
    assert "inputs" in json.loads((out / "eval_config.json").read_text())


def test_a_folder_from_before_fingerprints_is_decoded_again(tiny_llama_dir, tmp_path, decoded):
    data, out = write_test(tmp_path / "data", records("r")), tmp_path / "eval"
    assert run_eval(tiny_llama_dir, data, out) == 0
    config = json.loads((out / "eval_config.json").read_text())
    config.pop("inputs")
    (out / "eval_config.json").write_text(json.dumps(config))
    for path in (out / "outputs").iterdir():
        path.rename(path.with_name("old-style-L2.jsonl" if "L2" in path.name else "old-style-L4.jsonl"))
    decoded.clear()
    assert run_eval(tiny_llama_dir, data, out) == 0
    assert decoded == [3]
    outputs_of(out)  # the old files are gone


def test_large_weights_are_fingerprinted_by_header_samples_and_mtime(tmp_path, monkeypatch):
    from safetensors.torch import save_file

    monkeypatch.setattr(ev_inputs, "FULL_HASH_BYTES", 1024)
    weights = tmp_path / "model.safetensors"
    save_file({"w": torch.zeros(64, 64)}, weights)
    (tmp_path / "train_log.csv").write_text("step,loss\n1,2.0\n")
    first = ev_inputs.folder_fingerprint(tmp_path)
    assert set(first) == {"model.safetensors"}  # logs never force a recompute
    assert {"size", "mtime_ns", "header_sha256", "sampled_sha256"} == set(first["model.safetensors"])
    save_file({"w": torch.ones(64, 64)}, weights)  # same shapes, so the same header
    second = ev_inputs.folder_fingerprint(tmp_path)
    assert second["model.safetensors"]["header_sha256"] == first["model.safetensors"]["header_sha256"]
    assert second["model.safetensors"]["sampled_sha256"] != first["model.safetensors"]["sampled_sha256"]
    monkeypatch.setattr(ev_inputs, "FULL_HASH_BYTES", 1 << 20)
    assert set(ev_inputs.folder_fingerprint(tmp_path)["model.safetensors"]) == {"size", "sha256"}


def test_decoding_looks_at_the_load_again_between_batches(tiny_llama_dir, tmp_path, monkeypatch):
    import piilab.runtime

    looks = []
    monkeypatch.setattr(piilab.runtime, "look_again", lambda: looks.append(1))
    data = write_test(tmp_path / "data", records("r") + records("s"))  # 6 samples, batches of 3
    assert run_eval(tiny_llama_dir, data, tmp_path / "eval") == 0
    assert len(looks) == 2  # one model, both layers in each batch: 2 batches of 3
