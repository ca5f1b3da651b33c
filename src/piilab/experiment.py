"""One experiment file, the whole flow: data → train → eval (vanilla and tuned) → report.

`piilab run EXPERIMENT.yaml` maps each section of the file one to one onto a stage's config
dataclass. A stage is skipped when its output is complete and was made with the same settings;
a changed stage is redone, and so is everything after it. `piilab demo` runs the packaged
`configs/demo.yaml` (synthetic data + SmolLM2-135M on a CPU).
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar

import yaml

from piilab.errors import PiilabError
from piilab.io import atomic_write, read_json, write_json
from piilab.typecheck import checked_settings, hints_of

log = logging.getLogger(__name__)

STAMPS = "stages.json"


@dataclass
class Experiment:
    """An experiment file: one section per stage, each the stage's own settings."""

    out: str
    """Folder for everything: data/, run/ (the adapter), eval/ (results), eval/report/."""
    data: dict[str, Any]
    """`piilab data build` settings (piilab.data.build.BuildConfig fields, without `out`)."""
    train: dict[str, Any] | None = None
    """`piilab train` settings (piilab.train.TrainConfig fields, without `data`/`out`); None skips."""
    eval: dict[str, Any] = field(default_factory=dict)
    """`piilab eval` settings (piilab.eval.config.EvalConfig fields, without `data`/`out`).
    `models` defaults to the trained model's base (vanilla) and the trained adapter (tuned)."""
    report: dict[str, Any] = field(default_factory=dict)
    """`piilab report` settings (examples, good_fraction)."""
    extract: dict[str, Any] = field(default_factory=dict)
    """`piilab extract`'s defaults for the trained adapter (second_look), saved beside it
    (piilab.second_look.DEFAULTS_FILE); none: piilab's own."""
    source: ClassVar[str] = ""
    """The file it was read from (not a section): named in its errors."""

    @classmethod
    def from_yaml(cls, path: str | Path, out: str | None = None) -> "Experiment":
        path = Path(path)
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        except OSError as err:
            raise PiilabError(f"{path}: cannot read experiment file ({err.strerror})") from None
        except yaml.YAMLError as err:
            raise PiilabError(f"{path}: malformed YAML ({str(err).splitlines()[0]})") from None
        if not isinstance(raw, dict):
            raise PiilabError(f"{path}: an experiment file is a mapping of stage sections")
        if out:
            raw["out"] = out
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise PiilabError(f"{path}: unknown section(s) {', '.join(unknown)}; "
                              f"expected {', '.join(sorted(known))}")
        if "out" not in raw or "data" not in raw:
            raise PiilabError(f"{path}: an experiment needs 'out' and 'data'")
        if not isinstance(raw["out"], str) or not raw["out"]:
            raise PiilabError(f"{path}: 'out' must be a folder name, got {raw['out']!r}")
        for section in ("data", "train", "eval", "report", "extract"):
            value = raw.get(section)
            if not isinstance(value, dict) and not (value is None and section != "data"):
                raise PiilabError(f"{path}: section '{section}' must be a mapping of settings, got {value!r}")
        raw = {key: {} if value is None and key in ("eval", "report", "extract") else value
               for key, value in raw.items()}
        exp = cls(**raw)
        exp.source = str(path)
        return exp

    @property
    def root(self) -> Path:
        return Path(self.out)


def _build(cls, section: str, values: dict[str, Any], nested: dict[str, Any] | None = None,
           **fixed: Any):
    """A stage config from its YAML section: every key known and of its field's type (nested
    sections too, piilab.typecheck) before the config's own checks run."""
    checked = checked_settings(hints_of(cls, leave_out=tuple(fixed)), values,
                               f"experiment section '{section}'", nested)
    try:
        return cls(**{**checked, **fixed})
    except PiilabError as err:  # the config's own checks, named by section like the types'
        raise PiilabError(f"experiment section '{section}': {err}") from None


def stage_configs(exp: Experiment) -> dict[str, Any]:
    """Every stage's config object, built (and so checked) before anything runs; an error names
    the experiment file."""
    try:
        return _stage_configs(exp)
    except PiilabError as err:
        raise PiilabError(f"{exp.source}: {err}" if exp.source else str(err)) from None


def _stage_configs(exp: Experiment) -> dict[str, Any]:
    """stage_configs, its errors not yet naming the file."""
    from piilab.data.build import BuildConfig
    from piilab.eval.config import EvalConfig, ModelUnderTest
    from piilab.train import TrainConfig

    from piilab.eval.report import build_report
    from piilab.layers.decode import Decoding

    report = checked_settings(hints_of(build_report, leave_out=("results_dir", "out_dir")),
                              exp.report, "experiment section 'report'")
    root = exp.root
    configs: dict[str, Any] = {
        "data": _build(BuildConfig, "data", exp.data, out=str(root / "data")),
    }
    models = exp.eval.get("models")
    if exp.train is not None:
        train = _build(TrainConfig, "train", exp.train, data=str(root / "data"),
                       out=str(root / "run"))
        configs["train"] = train
        if models is None:
            tuned = (ModelUnderTest(str(root / "run")) if train.full_finetune
                     else ModelUnderTest(train.model, str(root / "run")))
            models = [ModelUnderTest(train.model), tuned]
    if not models:
        raise PiilabError("experiment: 'eval.models' is needed when there is no 'train' section")
    models = [_model(i, m) for i, m in enumerate(models if isinstance(models, list) else [models])]
    configs["eval"] = _build(EvalConfig, "eval", {**exp.eval, "models": models},
                             {"decoding": Decoding}, data=str(root / "data"), out=str(root / "eval"))
    configs["report"] = report
    configs["extract"] = _extract_defaults(exp)
    return configs


def check_exit_layers(configs: dict[str, Any], exp: Experiment) -> None:
    """Eval's exit layers against each model's depth (its config.json, no weights), and tuned
    lenses against its shape, before any stage runs; the run folder, not trained yet, has its
    base model's config."""
    from piilab import models
    from piilab.eval.run import check_layers

    run = str(exp.root / "run")
    base = configs["train"].model if "train" in configs else None

    def config_of(model):
        """A model's config, the experiment's own run read as the model it is trained from."""
        spec = base if base and model.spec == run else model.spec
        adapter = None if base and model.adapter == run else model.adapter
        return models.model_config(adapter or spec)

    try:
        check_layers(configs["eval"], config_of)
    except PiilabError as err:
        raise PiilabError(f"{exp.source or 'experiment'}: section 'eval': {err}") from None


def _model(index: int, model: Any):
    """One of `eval.models`: a ModelUnderTest, or a mapping of its fields from the YAML."""
    from piilab.eval.config import ModelUnderTest

    if isinstance(model, ModelUnderTest):
        return model
    if not isinstance(model, dict):
        raise PiilabError(f"experiment section 'eval': models must be a list of mappings "
                          f"(spec, adapter, ...), got {model!r}")
    return _build(ModelUnderTest, f"eval.models[{index}]", model)


def _extract_defaults(exp: Experiment) -> dict[str, float]:
    """The `extract` section, checked: what to save beside the trained adapter."""
    from piilab.second_look import checked_threshold

    unknown = sorted(set(exp.extract) - {"second_look"})
    if unknown:
        raise PiilabError(f"experiment section 'extract': unknown key(s) {', '.join(unknown)}; "
                          "known: second_look")
    if exp.extract and exp.train is None:
        raise PiilabError("experiment section 'extract': it needs a 'train' section (its "
                          "defaults are saved beside the trained adapter)")
    return {key: checked_threshold(value, f"experiment section 'extract', {key}")
            for key, value in exp.extract.items()}


# Settings added after run folders were first stamped, with their defaults: left out of a stamp
# while at the default, so those folders still resume instead of building and training again.
_ADDED_LATER = {"real": [], "carriers": 0, "excerpts": 0.0}


def _stamp(config: Any) -> Any:
    from piilab.eval.config import saved_models

    stamp = json_ready(dataclasses.asdict(config) if dataclasses.is_dataclass(config) else config)
    if isinstance(stamp, dict) and "models" in stamp:  # eval's, as earlier folders stamped it
        stamp["models"] = saved_models(stamp["models"])
    if isinstance(stamp, dict):
        stamp = {k: v for k, v in stamp.items() if _ADDED_LATER.get(k, object()) != v}
    return stamp


def json_ready(value: Any) -> Any:
    import json

    return json.loads(json.dumps(value, default=str))


def _stage_complete(stage: str, root: Path) -> bool:
    """Whether a stage's output is all there (a stamp alone is not enough)."""
    from piilab import train as train_stage

    checks = {
        "data": [root / "data" / "card.json", root / "data" / "test.jsonl"],
        # The metrics are written after the adapter or model, so they mark a finished save.
        "train": [root / "run" / train_stage.METRICS_FILE],
        "eval": [root / "eval" / "results.json"],
    }
    return all(path.exists() for path in checks.get(stage, [Path("/nonexistent")]))


def run_experiment(exp: Experiment) -> Path:
    """Run every stage that is not already complete; returns the report's path."""
    from piilab.data.build import build_dataset
    from piilab.eval.report import build_report
    from piilab.eval.run import evaluate
    from piilab.train import train

    configs = stage_configs(exp)
    check_exit_layers(configs, exp)
    root = exp.root
    root.mkdir(parents=True, exist_ok=True)
    stamps_path = root / STAMPS
    stamps = read_json(stamps_path) if stamps_path.exists() else {}
    with atomic_write(root / "experiment.yaml") as handle:  # the exact config beside the outputs
        yaml.safe_dump(json_ready(dataclasses.asdict(exp)), handle, sort_keys=False)

    folders = {"data": "data", "train": "run", "eval": "eval"}
    upstream_ran = False
    for stage in ("data", "train", "eval"):
        if stage not in configs:
            continue
        config, stamp = configs[stage], _stamp(configs[stage])
        if not upstream_ran and stamps.get(stage) == stamp and _stage_complete(stage, root):
            log.info("stage %s: complete, skipped", stage)
            continue
        # Stale if an earlier stage was redone or its own settings changed; an unfinished
        # stage with unchanged settings keeps its folder and resumes.
        if (upstream_ran or stamps.get(stage) not in (None, stamp)) and (root / folders[stage]).exists():
            why = "an earlier stage ran" if upstream_ran else "its settings changed"
            log.info("stage %s: %s, starting it afresh", stage, why)
            shutil.rmtree(root / folders[stage])
        stamps.pop(stage, None)
        write_json(stamps_path, stamps)
        log.info("stage %s: running", stage)
        if stage == "data":
            build_dataset(config)
        elif stage == "train":
            has_checkpoint = any((root / "run" / "checkpoints").glob("checkpoint-*"))
            train(dataclasses.replace(config, resume=has_checkpoint))
        else:
            evaluate(config)
        upstream_ran = True
        stamps[stage] = stamp
        write_json(stamps_path, stamps)
    if "train" in configs:
        _save_extract_defaults(root / "run", configs["extract"])
    return build_report(root / "eval", **configs["report"])


def _save_extract_defaults(run: Path, defaults: dict[str, float]) -> None:
    """The recipe's `extract` defaults beside its adapter, or none (a file an earlier version of
    the recipe left is removed): they change no stage's output, so they are not stamped."""
    from piilab.second_look import DEFAULTS_FILE, save_threshold

    if "second_look" in defaults:
        save_threshold(run, defaults["second_look"])
    elif (run / DEFAULTS_FILE).exists():
        log.info("%s: removed (the recipe has no 'extract' section now)", run / DEFAULTS_FILE)
        (run / DEFAULTS_FILE).unlink()


def demo_config_path() -> Path:
    """The packaged demo experiment (`src/piilab/configs/demo.yaml`)."""
    return Path(str(resources.files("piilab").joinpath("configs/demo.yaml")))
