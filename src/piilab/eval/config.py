"""What an eval is: the models under test and every setting that decides what `piilab eval`
computes (saved as eval_config.json), and the name of each (model, layer) run's outputs.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from piilab.errors import PiilabError
from piilab.eval import metrics


@dataclass(frozen=True)
class ModelUnderTest:
    """One model to evaluate: a spec, with an adapter or without, and optionally its own lens."""

    spec: str
    """Embedded name, local folder or hub id."""
    adapter: str | None = None
    """A PEFT adapter folder (a `piilab train` run directory), or None for the vanilla model."""
    lens: str | None = None
    """This model's lens (e.g. tuned:LENS_DIR); None uses the eval's `lens`. The same model may
    be listed twice with two lenses, to compare them in one results.json."""
    layers: tuple[int, ...] | None = None
    """This model's exit layers; None uses the eval's `layers`. Models of different depths are
    compared at about the same depths (8, 16, 24, 30 of 30 beside 5, 9, 14, 18 of 18)."""

    def __post_init__(self) -> None:
        if self.layers is not None:  # a list from JSON or the command line; frozen, so hashable
            object.__setattr__(self, "layers", tuple(self.layers))


@dataclass
class EvalConfig:
    """Everything that decides what `piilab eval` computes (saved as eval_config.json)."""

    models: list[ModelUnderTest]
    """The models to compare, vanilla and tuned alike."""
    data: str
    """A dataset folder (its test.jsonl is used) or a JSONL file of records."""
    out: str
    """The results folder."""
    layers: list[int] | None = None
    """Exit layers; None means each model's last layer."""
    lens: str = "norm"
    """norm (final norm + unembedding), raw (the original variant), or tuned:LENS_DIR."""
    limit: int | None = None
    """Evaluate only the first N test records."""
    metrics: tuple[str, ...] = metrics.METRICS
    """Which metrics to compute."""
    bertscore_model: str | None = None
    """BERTScore encoder name or path (default: the packaged all-MiniLM-L6-v2)."""
    bleu: str = "sacrebleu"
    """sacrebleu, or nltk for the original experiment's variant."""
    bootstrap: int = 0
    """Bootstrap resamples for 95% intervals (0: none)."""
    seed: int = 0
    """Seed for bootstrap resampling."""
    decoding: dict[str, Any] = field(default_factory=dict)
    """Decoding settings (piilab.layers.decode.Decoding fields)."""
    constrain: bool = True
    """Copy-constrained answers for PII records (values copied from the text, labels from the
    set; layers/constrain.py); False decodes free, as the original experiment did."""
    second_look: float | str = 0.0
    """PII records' outputs as `piilab extract` finds them, with its second look at this
    threshold (piilab.eval.as_extract); "auto": each model's own, as extract takes it; 0: off."""
    validators: tuple[str, ...] = ()
    """PII records' outputs as `piilab extract` finds them, with these validators (piilab.shapes
    modes: check, extend, complete); none: the model's answer alone."""
    batch_size: int = 8
    """Prompts decoded together."""
    device: str = "auto"
    dtype: str = "auto"

    def __post_init__(self) -> None:
        if not self.models:
            raise PiilabError("eval needs at least one --model")
        self.models = [m if isinstance(m, ModelUnderTest) else ModelUnderTest(**m)
                       for m in self.models]
        self.metrics = metrics.check_metrics(self.metrics)
        if not self.metrics:  # a run scored only for "degenerate" says nothing
            raise PiilabError(f"--metrics: choose at least one of {', '.join(metrics.METRICS)}")
        metrics.check_bleu_variant(self.bleu)
        if self.limit is not None and self.limit < 1:
            raise PiilabError(f"--limit must be at least 1, not {self.limit}")
        if self.batch_size < 1:
            raise PiilabError(f"--batch-size must be at least 1, not {self.batch_size}")
        if self.bootstrap < 0:
            raise PiilabError(f"--bootstrap must be >= 0 (0: no intervals), not {self.bootstrap}")
        self.check_extract_settings()
        self.decoding_settings()  # checked here, so a bad value never stamps a results folder
        from piilab.layers.lenses import check_lens

        for lens in {self.lens, *(m.lens for m in self.models if m.lens)}:
            check_lens(lens)
        runs = [replace(m, layers=None) for m in self.models]  # what names a run's outputs
        twice = [m for i, m in enumerate(self.models) if runs[i] in runs[:i]]
        if twice:
            m = twice[0]
            raise PiilabError(f"--model {m.spec}{f' --adapter {m.adapter}' if m.adapter else ''} is given twice "
                              "with the same lens: give it once (or give each its own --model-lens)")

    def check_extract_settings(self) -> None:
        """--second-look and --validators as extract takes them (a list from YAML too)."""
        from piilab import shapes
        from piilab.second_look import checked_threshold

        if self.second_look != "auto":
            self.second_look = checked_threshold(self.second_look, "--second-look")
        self.validators = shapes.checked_modes(self.validators)  # "+postal" in an experiment file too
        if self.second_look and (not self.constrain or self.decoding.get("sample")):
            raise PiilabError("--second-look needs greedy, copy-constrained decoding: drop "
                              "--second-look, or drop --free-decoding and the sampling settings")

    def decoding_settings(self):
        """`decoding` as the decode engine's Decoding; unknown keys or bad values are an error."""
        from piilab.layers.decode import Decoding
        from piilab.typecheck import checked_settings, hints_of

        return Decoding(**checked_settings(hints_of(Decoding), self.decoding, "decoding"))

    @property
    def as_extract(self) -> bool:
        """Whether PII records are scored as `piilab extract` finds their PII."""
        return bool(self.second_look or self.validators)

    def lens_of(self, model: ModelUnderTest) -> str:
        """The lens a model decodes through: its own, else the eval's."""
        return model.lens or self.lens

    def run_id(self, model: ModelUnderTest, layer: int, inputs: str = "") -> str:
        """The id (and outputs file name) of one (model, layer) run of this eval, given the
        digest of its inputs' content (`eval_inputs`)."""
        return run_id(model, layer, self.lens_of(model), inputs)

    def identity(self) -> dict[str, Any]:
        """The settings a resumed run must share with the run that wrote the folder."""
        same = {k: v for k, v in _jsonable(asdict(self)).items() if k not in ("out", "device")
                and not (k in ("second_look", "validators") and not v)}  # as before they were
        return {**same, "models": saved_models(same["models"])}


def saved_models(models: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Models as eval_config.json and an experiment's stamp hold them: a model without layers of
    its own is written as before models could have them, so earlier folders still resume."""
    return [{k: v for k, v in m.items() if k != "layers" or v is not None} for m in models]


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def run_id(model: ModelUnderTest, layer: int, lens: str, inputs: str = "") -> str:
    """A readable, unique file name for one (model, adapter, layer, lens) on given inputs."""
    from piilab.eval.report import slug

    key = f"{model.spec}\0{model.adapter}\0{lens}" + (f"\0{inputs}" if inputs else "")
    digest = hashlib.sha1(key.encode()).hexdigest()[:6]
    name = slug(Path(model.spec).name or model.spec)
    if model.adapter:
        name += "+" + slug(Path(model.adapter).name)
    return f"{name}-{slug(lens.split(':')[0])}-{digest}-L{layer}"
