"""Adapters averaged into one: exactly at the summed rank, or cut to a rank by SVD."""

import json
import os
import stat

import pytest
import torch
from safetensors.torch import load_file
from tiny import tiny_llama

from piilab import models
from piilab.errors import PiilabError
from piilab.models import soup


def lora_adapter(tokenizer, folder, seed, r=4, alpha=8, **options):
    """A tiny LoRA adapter with random A and B (so its update is not zero)."""
    from peft import LoraConfig, get_peft_model

    base = tiny_llama(tokenizer)  # the same base for every adapter (it seeds itself)
    torch.manual_seed(seed)  # then each adapter's own draws
    with models.peft_wrap_quietly():
        model = get_peft_model(base, LoraConfig(
            r=r, lora_alpha=alpha, target_modules=["q_proj", "v_proj", "down_proj"],
            init_lora_weights=False, **options))
        model.save_pretrained(folder, safe_serialization=True)
    (folder / "prompt_format.json").write_text(json.dumps({"kind": "plain", "seed": seed}))
    return folder


def merged_weights(tokenizer, folder):
    from peft import PeftModel

    with models.peft_wrap_quietly():
        model = PeftModel.from_pretrained(tiny_llama(tokenizer), folder).merge_and_unload()
    return {name: t.detach().clone() for name, t in model.state_dict().items()}


def updates(folder):
    """Module -> its update B·A·scale, from an adapter folder."""
    config = json.loads((folder / soup.CONFIG).read_text())
    tensors = load_file(str(folder / soup.WEIGHTS))
    scale = config["lora_alpha"] / config["r"]
    return {name: tensors[name.replace(".lora_A.", ".lora_B.")].double() @ tensors[name].double() * scale
            for name in tensors if ".lora_A." in name}


def test_an_exact_soup_is_the_mean_of_the_merged_models(tokenizer, tmp_path):
    runs = [lora_adapter(tokenizer, tmp_path / f"run{i}", seed=i, r=r, alpha=a, use_rslora=rs)
            for i, (r, a, rs) in enumerate([(4, 8, False), (2, 8, False), (4, 4, True)])]  # other scales too
    out = soup.make_soup(runs, tmp_path / "soup")
    expected = [merged_weights(tokenizer, run) for run in runs]
    souped = merged_weights(tokenizer, out)
    changed = 0
    for name, weight in souped.items():
        mean = sum(w[name] for w in expected) / len(expected)
        assert torch.allclose(weight, mean, atol=1e-6), name
        changed += not torch.equal(weight, expected[0][name])
    assert changed >= 3 * 2  # q, v and down projections of each layer moved
    config = json.loads((out / soup.CONFIG).read_text())
    assert config["r"] == 10 and config["lora_alpha"] / config["r"] == 2.0
    assert json.loads((out / "prompt_format.json").read_text())["seed"] == 0  # the first run's
    assert json.loads((out / soup.RECORD).read_text())["exact"] is True


def test_a_soup_cut_to_a_rank_keeps_each_updates_largest_singular_values(tokenizer, tmp_path):
    runs = [lora_adapter(tokenizer, tmp_path / f"run{i}", seed=i) for i in range(3)]
    exact = updates(soup.make_soup(runs, tmp_path / "exact"))
    full = updates(soup.make_soup(runs, tmp_path / "full", rank=12))
    cut = updates(soup.make_soup(runs, tmp_path / "cut", rank=4))
    for name, update in exact.items():
        assert torch.allclose(full[name], update, atol=1e-6)
        values = torch.linalg.svdvals(update)
        assert torch.linalg.matrix_rank(cut[name]) == 4
        assert torch.allclose(torch.linalg.svdvals(cut[name])[:4], values[:4], rtol=1e-5)
        best = torch.linalg.norm(update - cut[name]) ** 2  # Eckart-Young: the rest of the energy
        assert torch.isclose(best, (values[4:] ** 2).sum(), rtol=1e-4)


def test_a_rank_above_a_narrow_modules_width_keeps_its_whole_update(tokenizer, tmp_path):
    runs = [lora_adapter(tokenizer, tmp_path / f"run{i}", seed=i, r=8) for i in range(3)]
    exact = updates(soup.make_soup(runs, tmp_path / "exact"))
    wide = updates(soup.make_soup(runs, tmp_path / "wide", rank=20))  # v_proj writes 16 values
    narrow = [name for name in exact if "v_proj" in name]
    assert narrow and all(torch.linalg.matrix_rank(exact[name]) == 16 for name in narrow)
    for name in narrow:  # its 16 directions all kept, the rest of rank 20 zeros
        assert torch.allclose(wide[name], exact[name], atol=1e-6), name


def test_adapters_that_cannot_be_averaged_are_refused_naming_the_file(tokenizer, tmp_path):
    first = lora_adapter(tokenizer, tmp_path / "a", seed=0)
    with pytest.raises(PiilabError, match="two adapters at least"):
        soup.make_soup([first], tmp_path / "soup")
    other = lora_adapter(tokenizer, tmp_path / "b", seed=1)
    config = json.loads((other / soup.CONFIG).read_text())
    (other / soup.CONFIG).write_text(json.dumps(dict(config, target_modules=["q_proj"])))
    with pytest.raises(PiilabError, match=r"b/adapter_config.json: target_modules \['q_proj'\]"):
        soup.make_soup([first, other], tmp_path / "soup")
    (other / soup.CONFIG).write_text(json.dumps(dict(config, use_dora=True)))
    with pytest.raises(PiilabError, match="only plain LoRA adapters average this way \\(use_dora\\)"):
        soup.make_soup([first, other], tmp_path / "soup")
    (other / soup.WEIGHTS).unlink()
    with pytest.raises(PiilabError, match="not a LoRA adapter \\(missing adapter_model.safetensors\\)"):
        soup.make_soup([first, other], tmp_path / "soup")
    with pytest.raises(PiilabError, match="rank 9: choose 1 to 8"):
        soup.make_soup([first, lora_adapter(tokenizer, tmp_path / "c", seed=2)], tmp_path / "soup", rank=9)
    assert not (tmp_path / "soup").exists()


def test_the_module_runs_as_a_command(tokenizer, tmp_path, capsys):
    runs = [str(lora_adapter(tokenizer, tmp_path / f"run{i}", seed=i)) for i in range(2)]
    assert soup.main([str(tmp_path / "soup"), *runs, "--rank", "4"]) == 0
    assert "2 adapters at rank 4" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_:
        soup.main([str(tmp_path / "soup"), runs[0]])
    assert exit_.value.code == 2 and "two adapters at least" in capsys.readouterr().err


def test_a_soup_is_readable_by_every_user_of_a_shared_folder(tokenizer, tmp_path):
    runs = [lora_adapter(tokenizer, tmp_path / f"run{i}", seed=i) for i in range(2)]
    out = soup.make_soup(runs, tmp_path / "soup")
    umask = os.umask(0)
    os.umask(umask)
    for path in [out, *out.iterdir()]:
        usual = (0o777 if path.is_dir() else 0o666) & ~umask
        assert stat.S_IMODE(path.stat().st_mode) == usual, path.name
