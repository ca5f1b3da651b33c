"""Adapters shipped inside piilab: exported small and base-by-name, resolved by name, extract's default."""

import json
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file
from tiny import tiny_llama

from piilab import models
from piilab.cli import main
from piilab.errors import PiilabError
from piilab.models import shipped


@pytest.fixture
def run_dir(tmp_path, tokenizer):
    """A finished adapter run as `piilab train` leaves it (tiny LoRA, prompt files, train config)."""
    from peft import LoraConfig, get_peft_model

    folder = tmp_path / "run"
    with models.peft_wrap_quietly():
        model = get_peft_model(tiny_llama(tokenizer), LoraConfig(r=4, target_modules="all-linear",
                                                                 init_lora_weights=False))
        model.save_pretrained(folder, safe_serialization=True)
    (folder / "train_config.json").write_text(json.dumps({"config": {"model": "smollm2-135m", "data": "d", "out": "r"}}))
    (folder / "prompt_format.json").write_text(json.dumps({"kind": "plain"}))
    (folder / "prompt_settings.json").write_text(json.dumps({"style": "list",
                                                             "source": "/home/me/exp/data/card.json"}))
    return folder


def test_export_writes_bf16_weights_and_names_the_base_not_a_path(run_dir, tmp_path):
    out = shipped.export_adapter(run_dir, tmp_path / "ship" / "piilab-x")
    original = load_file(str(run_dir / shipped.WEIGHTS))
    exported = load_file(str(out / shipped.WEIGHTS))
    assert exported.keys() == original.keys()
    for name, tensor in exported.items():
        assert tensor.dtype == torch.bfloat16
        assert torch.equal(tensor, original[name].to(torch.bfloat16))
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == "smollm2-135m"
    assert config["target_modules"] == sorted(config["target_modules"])  # a stable file from run to run
    settings = json.loads((out / "prompt_settings.json").read_text())
    assert settings == {"style": "list", "source": "exp/data/card.json"}  # no path of this machine
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["adapter_config.json", shipped.WEIGHTS, *shipped.KEPT_FILES])


def test_export_keeps_the_recipes_extract_defaults_where_it_chose_some(run_dir, tmp_path):
    from piilab.second_look import save_threshold, threshold_for

    save_threshold(run_dir, 0)
    assert threshold_for(shipped.export_adapter(run_dir, tmp_path / "piilab-x"))[0] == 0.0


def test_export_refuses_unfinished_runs_and_non_embedded_bases(run_dir, tmp_path):
    (run_dir / "train_config.json").write_text(json.dumps({"config": {"model": "/home/me/llama", "data": "d", "out": "r"}}))
    with pytest.raises(PiilabError, match="only adapters of embedded models ship"):
        shipped.export_adapter(run_dir, tmp_path / "out")
    (run_dir / shipped.WEIGHTS).unlink()
    with pytest.raises(PiilabError, match=f"missing {shipped.WEIGHTS}"):
        shipped.export_adapter(run_dir, tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.fixture
def shipped_dir(tmp_path, monkeypatch, tiny_llama_dir):
    """A package adapters folder holding one adapter, `piilab-tiny`, on the tiny llama."""
    folder = tmp_path / "adapters" / "piilab-tiny"
    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text(
        json.dumps({"base_model_name_or_path": str(tiny_llama_dir), "peft_type": "LORA"}))
    monkeypatch.setattr(shipped, "SHIPPED_DIR", tmp_path / "adapters")
    return folder


def test_a_shipped_name_resolves_to_its_folder_and_base(shipped_dir, tiny_llama_dir):
    resolved = models.resolve("piilab-tiny")
    assert resolved.adapter == str(shipped_dir)
    assert resolved.path == str(tiny_llama_dir)
    assert models.trained_folder("piilab-tiny") == str(shipped_dir)


def test_models_list_names_shipped_adapters(shipped_dir, capsys, tiny_llama_dir):
    assert main(["models", "list"]) == 0
    assert "piilab-tiny    shipped" in capsys.readouterr().out
    assert main(["models", "list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {"name": "piilab-tiny", "base": str(tiny_llama_dir), "shipped": True}.items() <= rows[-1].items()


def test_extract_without_model_uses_the_shipped_default(monkeypatch, capsys):
    seen = []

    def fake_load(spec, adapter, **kwargs):
        seen.append((spec, adapter))
        raise PiilabError("stop here")

    monkeypatch.setattr("piilab.models.load_model", fake_load)
    monkeypatch.setattr("piilab.models.model_config", lambda spec, *a: SimpleNamespace(
        num_hidden_layers=4))  # the exit layer is checked from the config before the load
    assert main(["extract", "Jane"]) == 2
    assert main(["extract", "Jane", "--adapter", "runs/x"]) == 2
    assert main(["extract", "Jane", "--model", "runs/y"]) == 2
    assert seen == [(shipped.SHIPPED_DEFAULT, None), (models.DEFAULT_MODEL, "runs/x"), ("runs/y", None)]
