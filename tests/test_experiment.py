"""`piilab run`: the whole flow on a tiny model, and stages skipped when already complete."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from piilab import experiment
from piilab.cli import main
from piilab.errors import PiilabError


@pytest.fixture
def long_context_model(tmp_path, tokenizer):
    """A tiny Llama that takes whole instruction prompts under the tiny byte-level tokenizer."""
    from tiny import save_model_dir, tiny_llama

    return save_model_dir(tiny_llama(tokenizer, max_position_embeddings=4096), tokenizer,
                          tmp_path / "tiny-long")


def write_experiment(tmp_path, model_dir, **overrides):
    exp = {
        "out": str(tmp_path / "exp"),
        "data": {"synthetic": 60, "test_size": 0.2, "seed": 1},
        "train": {"model": str(model_dir), "max_steps": 2, "batch_size": 4, "max_length": 2048,
                  "lr": 1e-3, "device": "cpu", "save_steps": 1},
        "eval": {"layers": [2, 4], "limit": 3, "metrics": ["bleu", "rouge", "pii"],
                 "decoding": {"max_new_tokens": 4}, "device": "cpu"},
        **overrides,
    }
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(exp))
    return path


@pytest.mark.slow
def test_run_does_every_stage_then_skips_what_is_complete(tmp_path, long_context_model,
                                                          monkeypatch, capsys):
    path = write_experiment(tmp_path, long_context_model, extract={"second_look": 0})
    assert main(["run", str(path)]) == 0
    root = tmp_path / "exp"
    defaults = root / "run" / "extract_defaults.json"
    assert json.loads(defaults.read_text()) == {"second_look": 0.0}  # beside the adapter
    assert f"report: {root / 'eval' / 'report' / 'report.md'}" in capsys.readouterr().out
    results = json.loads((root / "eval" / "results.json").read_text())
    # vanilla and tuned, each at both layers
    assert [(r["adapter"] is not None, r["layer"]) for r in results["runs"]] == [
        (False, 2), (False, 4), (True, 2), (True, 4)]
    assert (root / "run" / "adapter_config.json").exists()
    assert (root / "experiment.yaml").exists()
    assert len(list((root / "eval" / "report").glob("loss-*.png"))) == 1

    import piilab.data.build
    import piilab.eval.run
    import piilab.train

    for module, name in ((piilab.data.build, "build_dataset"), (piilab.train, "train"),
                         (piilab.eval.run, "evaluate")):
        monkeypatch.setattr(module, name, lambda *a, **k: pytest.fail(f"{name} ran again"))
    path = write_experiment(tmp_path, long_context_model)  # the same, without 'extract'
    assert main(["run", str(path)]) == 0  # everything complete: only the report is redrawn
    assert not defaults.exists()  # and the recipe's extract defaults follow it, unstamped


def test_unknown_keys_are_named(tmp_path, tiny_llama_dir):
    path = write_experiment(tmp_path, tiny_llama_dir, train={"model": "x", "learning_rate": 1})
    with pytest.raises(PiilabError, match="section 'train': unknown key.*learning_rate"):
        experiment.stage_configs(experiment.Experiment.from_yaml(path))
    path.write_text("out: x\nbogus: 1\ndata: {synthetic: 1}\n")
    with pytest.raises(PiilabError, match="unknown section.*bogus"):
        experiment.Experiment.from_yaml(path)
    path = write_experiment(tmp_path, tiny_llama_dir, eval={"models": [{"model": "x"}]})
    with pytest.raises(PiilabError, match=r"section 'eval.models\[0\]': unknown key.*model"):
        experiment.stage_configs(experiment.Experiment.from_yaml(path))
    path = write_experiment(tmp_path, tiny_llama_dir, eval={"models": ["x"]})
    with pytest.raises(PiilabError, match="models must be a list of mappings"):
        experiment.stage_configs(experiment.Experiment.from_yaml(path))


@pytest.mark.parametrize(("extract", "message"), [
    ({"second_lok": 0}, "section 'extract': unknown key.*second_lok"),
    ({"second_look": 1.5}, "section 'extract', second_look: .*probability in \\[0, 1\\), not 1.5"),
    ({"second_look": "off"}, "not 'off'"),
])
def test_extract_defaults_are_checked_before_anything_runs(tmp_path, tiny_llama_dir, extract, message):
    path = write_experiment(tmp_path, tiny_llama_dir, extract=extract)
    with pytest.raises(PiilabError, match=message):
        experiment.stage_configs(experiment.Experiment.from_yaml(path))


def test_extract_defaults_need_an_adapter_to_sit_beside(tmp_path, tiny_llama_dir):
    path = write_experiment(tmp_path, tiny_llama_dir, extract={"second_look": 0},
                            eval={"models": [{"spec": str(tiny_llama_dir)}]})
    raw = yaml.safe_load(path.read_text())
    del raw["train"]
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(PiilabError, match="'extract': it needs a 'train' section"):
        experiment.stage_configs(experiment.Experiment.from_yaml(path))


def test_demo_config_is_valid():
    exp = experiment.Experiment.from_yaml(experiment.demo_config_path(), out="somewhere")
    configs = experiment.stage_configs(exp)
    assert configs["train"].model == "smollm2-135m"
    assert [m.adapter is not None for m in configs["eval"].models] == [False, True]


def test_a_full_finetuning_experiment_evaluates_the_run_folder_as_the_model(tmp_path, tiny_llama_dir):
    path = write_experiment(tmp_path, tiny_llama_dir, train={"model": str(tiny_llama_dir), "full_finetune": True})
    models = experiment.stage_configs(experiment.Experiment.from_yaml(path))["eval"].models
    assert [(m.spec, m.adapter) for m in models] == [(str(tiny_llama_dir), None),
                                                     (str(tmp_path / "exp" / "run"), None)]


def test_a_setting_added_later_is_stamped_only_when_used():
    """Folders stamped before `data.real` and `data.carriers` existed resume: the data stamp
    names them only when set."""
    exp = experiment.Experiment.from_yaml(experiment.demo_config_path(), out="somewhere")
    stamp = experiment._stamp(experiment.stage_configs(exp)["data"])
    assert "real" not in stamp and "carriers" not in stamp and stamp["synthetic"] == 1500
    exp.data = {**exp.data, "real": ["mail"], "carriers": 100}
    stamp = experiment._stamp(experiment.stage_configs(exp)["data"])
    assert stamp["real"] == ["mail"] and stamp["carriers"] == 100


@pytest.mark.parametrize("config", sorted((Path(experiment.__file__).parent / "configs").glob("*.yaml")),
                         ids=lambda p: p.name)
def test_every_shipped_recipe_reads_and_its_pairs_share_data_and_recipe(config):
    """Each config in piilab's configs/ builds its stages; a -gemma recipe is its SmolLM2 twin's
    with only the model, its exit layers, the output folder and extract's defaults changed
    (issue 16's comparison)."""
    exp = experiment.Experiment.from_yaml(config)
    stages = experiment.stage_configs(exp)
    assert stages["train"].model in ("smollm2-135m", "gemma3-270m")
    # stamped as before models could have layers of their own: earlier folders skip their eval
    assert all("layers" not in m for m in experiment._stamp(stages["eval"])["models"])
    if config.stem.endswith("-gemma"):
        twin = experiment.Experiment.from_yaml(config.with_name(config.stem.removesuffix("-gemma") + ".yaml"))
        assert exp.data == twin.data
        assert {**exp.train, "model": None} == {**twin.train, "model": None}
        assert {**exp.eval, "layers": None} == {**twin.eval, "layers": None}


@pytest.mark.parametrize(("section", "values", "message"), [
    ("train", {"max_steps": "2"}, "section 'train': max_steps must be int, got '2'"),
    ("train", {"epochs": "one"}, "section 'train': epochs must be float, got 'one'"),
    ("train", {"share_prefix": "yes"}, "section 'train': share_prefix must be bool, got 'yes'"),
    ("eval", {"limit": "2"}, "section 'eval': limit must be int, got '2'"),
    ("eval", {"layers": ["8"]}, "section 'eval': layers[0] must be int, got '8'"),
    ("eval", {"layers": [8.5]}, "section 'eval': layers[0] must be int, got 8.5"),
    ("eval", {"layers": "8,x"}, "section 'eval': layers[1] must be int, got 'x'"),
    ("eval", {"validators": ["extend", 5]}, "section 'eval': validators[1] must be str, got 5"),
    ("eval", {"decoding": "greedy"}, "section 'eval', decoding: must be a mapping of settings"),
    ("eval", {"decoding": {"max_new_tok": 3}}, "section 'eval', decoding: unknown key(s) max_new_tok"),
    ("eval", {"decoding": {"max_new_tokens": 2.5}}, "decoding: max_new_tokens must be int, got 2.5"),
    ("eval", {"metrics": ["bleu", "foo"]}, "section 'eval': unknown metric(s) foo"),
    ("eval", {"models": [{"spec": "m", "layers": ["8"]}]}, "'eval.models[0]': layers[0] must be int"),
    ("report", {"n_examples": "two"}, "section 'report': n_examples must be int, got 'two'"),
])
def test_every_setting_has_its_type_before_any_stage_runs(tmp_path, tiny_llama_dir, section,
                                                          values, message):
    """Types are read from the stage configs' hints: optional, list, tuple, nested sections."""
    path = write_experiment(tmp_path, tiny_llama_dir, **{section: values})
    with pytest.raises(PiilabError) as error:
        experiment.stage_configs(experiment.Experiment.from_yaml(path))
    assert str(error.value).startswith(f"{path}: experiment section")  # the file, then where
    assert message in str(error.value)


def test_lists_are_taken_in_the_command_lines_forms(tmp_path, tiny_llama_dir):
    """A comma string is a list (metrics "bleu,rouge" is not its letters), one value a one-item
    list, and one source spec a one-item list (a path may hold a comma)."""
    path = write_experiment(tmp_path, tiny_llama_dir, data={"synthetic": 5, "sources": "kaggle:x,y"},
                            eval={"metrics": "bleu,rouge", "layers": 2, "validators": "extend",
                                  "models": [{"spec": "m", "layers": "1,2"}]})
    configs = experiment.stage_configs(experiment.Experiment.from_yaml(path))
    assert [(s.format, s.path) for s in configs["data"].sources] == [("kaggle", "x,y")]
    assert configs["eval"].metrics == ("bleu", "rouge") and configs["eval"].layers == [2]
    assert configs["eval"].validators == ("extend",) and configs["eval"].models[0].layers == (1, 2)


def test_exit_layers_beyond_a_model_are_refused_before_any_stage_runs(tmp_path, tiny_llama_dir,
                                                                      capsys):
    from helpers import one_line_error

    path = write_experiment(tmp_path, tiny_llama_dir, eval={"layers": [2, 99]})
    one_line_error(capsys, ["run", str(path)], "has layers 1..4, so exit layer(s) 99 do not exist")
    assert not (tmp_path / "exp").exists()  # the tuned model, not trained yet, read as its base
