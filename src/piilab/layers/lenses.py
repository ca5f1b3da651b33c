"""Every lens by name, for `--lens`: "norm", "raw", "tuned:LENS_DIR", and any registered one.

A spec "name:ARG" passes ARG (a folder, say) to the factory; `register_lens` adds a name.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from piilab.errors import PiilabError
from piilab.layers.lens import Lens, norm_lens, raw_lens
from piilab.layers.tuned_lens import check_fits_config, check_lens_folder, load_tuned_lens

LensFactory = Callable[[nn.Module, "str | None"], Lens]
LENSES: dict[str, LensFactory] = {"norm": norm_lens, "raw": raw_lens, "tuned": load_tuned_lens}


def register_lens(name: str, factory: LensFactory) -> None:
    """Make `factory(model, arg)` available as lens spec `name` or `name:arg`."""
    LENSES[name] = factory


def lens_spec(spec: str) -> tuple[str, str | None]:
    """(name, ARG) of a lens spec "name" or "name:ARG"; an unknown name is a one-line error."""
    name, _, arg = str(spec).partition(":")
    if name not in LENSES:
        raise PiilabError(f"unknown lens {spec!r}: use one of {', '.join(sorted(LENSES))}")
    return name, arg or None


def check_lens(spec: str, model_config=None, where: str = "") -> None:
    """A lens spec checked before any model loads: a known name, and for a tuned lens a folder
    that holds one, trained for a model of `model_config`'s shape where one is given."""
    name, arg = lens_spec(spec)
    if name == "tuned":
        check_lens_folder(arg)
        if model_config is not None:
            check_fits_config(arg, model_config, where or arg)


def make_lens(model: nn.Module, spec: str | Lens = "norm") -> Lens:
    """A lens from a spec ("norm", "raw", "name:ARG") or a ready Lens."""
    if isinstance(spec, Lens):
        return spec
    name, arg = lens_spec(spec)
    return LENSES[name](model, arg)
