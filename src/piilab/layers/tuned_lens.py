"""The tuned lens: one learned affine translator per exit layer, in front of the shared head.

The logit lens reads layer L as `unembed(final_norm(h_L))`; a tuned lens (Belrose et al. 2023)
reads `unembed(final_norm(h_L + A_L h_L + b_L))`, A and b trained by `lens_training.py`. A lens
folder holds `tuned_lens.safetensors` (keys `layer.<L>.weight` / `layer.<L>.bias`) and
`lens_config.json`; `--lens tuned:LENS_DIR` loads it through `load_tuned_lens`.
"""

from __future__ import annotations

import logging
import math
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from piilab.errors import PiilabError
from piilab.io import atomic_write, read_json, write_json
from piilab.layers.lens import Lens
from piilab.models import arch

log = logging.getLogger(__name__)

WEIGHTS_FILE = "tuned_lens.safetensors"
CONFIG_FILE = "lens_config.json"
FORMAT = "piilab-tuned-lens/1"

class Translators(nn.Module):
    """Per exit layer L, h -> h + A_L h + b_L; A and b start at zero, so it starts as the identity.

    The residual form makes weight decay pull towards the identity rather than towards zero.
    Parameters stay float32 whatever the model's dtype; the output has the input's dtype.
    """

    def __init__(self, hidden_size: int, layers: Sequence[int]) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.maps = nn.ModuleDict({str(layer): nn.Linear(hidden_size, hidden_size)
                                   for layer in sorted(set(layers))})
        for linear in self.maps.values():
            nn.init.zeros_(linear.weight)
            nn.init.zeros_(linear.bias)

    @property
    def layers(self) -> list[int]:
        return sorted(int(key) for key in self.maps)

    def forward(self, layer: int, hidden: torch.Tensor) -> torch.Tensor:
        x = hidden.float()
        return (x + self.maps[str(layer)](x)).to(hidden.dtype)

    def tensors(self) -> dict[str, torch.Tensor]:
        """Flat, contiguous CPU tensors for safetensors: layer.<L>.weight and layer.<L>.bias."""
        return {f"layer.{key}.{name}": value.detach().cpu().contiguous()
                for key, linear in self.maps.items() for name, value in linear.state_dict().items()}

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor]) -> "Translators":
        layers = sorted({int(key.split(".")[1]) for key in tensors})
        if not layers:
            raise ValueError("no translators")
        hidden = tensors[f"layer.{layers[0]}.weight"].shape[0]
        translators = cls(hidden, layers)
        state = {f"maps.{key.split('.', 1)[1]}": value for key, value in tensors.items()}
        translators.load_state_dict(state)
        return translators


def head(model: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
    """The shared head of every lens: unembed(final_norm(h)) in the model's dtype, as float32."""
    weight = arch.unembedding(model).weight
    return arch.logit_lens(model, hidden.to(weight.dtype), normalize=True).float()


# ---------------------------------------------------------------- lens folders


def fingerprint(model: nn.Module) -> list[float]:
    """A cheap signature of the head (unembedding and final norm sums) to spot a different model."""
    tensors = [arch.unembedding(model).weight, *arch.final_norm(model).parameters()]
    return [round(float(t.detach().double().sum()), 4) for t in tensors]


def save_lens(directory: str | Path, translators: Translators, config: dict[str, Any]) -> None:
    """Write the translators and their config into a lens folder, each file atomically."""
    from safetensors.torch import save

    directory = Path(directory)
    with atomic_write(directory / WEIGHTS_FILE, "wb") as handle:
        handle.write(save(translators.tensors(), metadata={"format": FORMAT}))
    write_json(directory / CONFIG_FILE, config)


def check_lens_folder(directory: str | Path | None) -> Path:
    """The folder of a `tuned:LENS_DIR` spec, if it holds a lens's files (else a one-line error):
    checked on its own too, before a model loads (an eval's settings)."""
    if not directory:
        raise PiilabError("the tuned lens needs its folder: --lens tuned:LENS_DIR")
    directory = Path(directory)
    if not (directory / CONFIG_FILE).is_file() or not (directory / WEIGHTS_FILE).is_file():
        raise PiilabError(f"{directory} is not a tuned lens folder (needs {CONFIG_FILE} and "
                          f"{WEIGHTS_FILE}; make one with `piilab lens train`)")
    return directory


def read_lens_config(directory: str | Path) -> dict[str, Any]:
    """A lens folder's config (no weights read); anything missing is a one-line error."""
    directory = check_lens_folder(directory)
    config = read_json(directory / CONFIG_FILE)
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise PiilabError(f"{directory / CONFIG_FILE}: not a {FORMAT} lens config")
    return config


def read_lens(directory: str | Path) -> tuple[Translators, dict[str, Any]]:
    """The translators and config of a lens folder; anything missing is a one-line error."""
    from safetensors.torch import load_file

    config, directory = read_lens_config(directory), Path(directory)
    try:
        translators = Translators.from_tensors(load_file(directory / WEIGHTS_FILE))
    except Exception as err:  # safetensors raises its own error types
        raise PiilabError(f"{directory / WEIGHTS_FILE}: unreadable ({err})") from None
    return translators, config


def check_fits(model: nn.Module, config: dict[str, Any], where: str) -> None:
    """A lens only reads the model it was trained for: same layer count and hidden size."""
    check_shape(config, arch.num_layers(model), arch.base_model(model).config.hidden_size, where)


def check_fits_config(directory: str | Path, model_config, where: str) -> None:
    """check_fits from a model's config, before its weights load (a config without a hidden
    size is checked by its layer count alone, and fully once the model is loaded)."""
    config = read_lens_config(directory)
    hidden = getattr(model_config, "hidden_size", None)
    check_shape(config if hidden else {**config, "hidden_size": None},
                model_config.num_hidden_layers, hidden, where)


def check_shape(config: dict[str, Any], n: int, hidden: int | None, where: str) -> None:
    """Refuse a lens `config` trained for a model of other than `n` layers and `hidden` size."""
    if (config.get("num_layers"), config.get("hidden_size")) != (n, hidden):
        raise PiilabError(
            f"{where}: this tuned lens was trained for {config.get('model')} "
            f"({config.get('num_layers')} layers, hidden size {config.get('hidden_size')}), "
            f"not this model ({n} layers, hidden size {hidden})")


# Models whose fit with a lens folder was checked. Weak keys: an id() could be reused by a later
# model once the first is freed, and that model would then skip its check.
_checked: weakref.WeakKeyDictionary[nn.Module, set[str | None]] = weakref.WeakKeyDictionary()


def load_tuned_lens(model: nn.Module, directory: str | None) -> Lens:
    """The `tuned:LENS_DIR` lens: layer L's translator, then the model's final norm and unembedding.

    The last layer needs no translator (the identity: the lens is the model itself there); a
    layer the lens was not trained for is an error rather than a silent logit lens.
    """
    translators, config = read_lens(directory)
    check_fits(model, config, directory)
    if translators.hidden_size != config["hidden_size"]:
        raise PiilabError(f"{directory}: weights do not match {CONFIG_FILE}")
    stored = config.get("fingerprint")
    seen = _checked.setdefault(model, set())
    if stored and directory not in seen:  # once per model: eval loads per batch
        seen.add(directory)
        if not all(math.isclose(a, b, rel_tol=1e-2, abs_tol=1e-2)
                   for a, b in zip(stored, fingerprint(model))):
            log.warning("%s: trained for %s, whose unembedding differs from this model's; the KL "
                        "it reports does not apply here", directory, config.get("model"))
    translators.to(next(model.parameters()).device).eval()
    last, trained = arch.num_layers(model), translators.layers

    def translate(layer: int, hidden: torch.Tensor) -> torch.Tensor:
        if layer == last:
            return hidden
        if layer not in trained:
            raise PiilabError(f"{directory}: no translator for layer {layer} (trained for layers "
                              f"{','.join(map(str, trained))}); retrain with --layers")
        return translators(layer, hidden)

    return Lens(f"tuned:{directory}", translate,
                lambda h: arch.logit_lens(model, h, normalize=True))


# ---------------------------------------------------------------- the whole stage
