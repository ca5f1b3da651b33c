"""Lenses: how the hidden state at an exit layer becomes next-token logits (design.md, "Exit layers").

A lens is two steps. `translate(layer, h)` is per exit layer: the identity for the logit lens, a
learned affine map for a tuned lens. `head(h)` is shared by every layer: the model's final norm
and unembedding. Because the head is shared, the engine unembeds the rows of all exit layers in
one matrix product per step.

- `norm` (default): unembed(final_norm(h_L)), the logit lens; at L = N this is the model itself.
- `raw`: unembed(h_L), the original experiment's variant. It used Hugging Face's
  `hidden_states[L]`, whose last entry already has the final norm applied, so at L = N `raw` is
  the ordinary model too.

The tuned lens is in `layers/tuned_lens.py`; `lenses.py` names every lens for `--lens`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from piilab.models import arch


@dataclass(frozen=True)
class Lens:
    """Exit-layer hidden states (R, H) -> logits (R, V): a per-layer translation, then a shared head."""

    name: str
    """How runs record the lens ("norm", "raw", "tuned:DIR")."""
    translate: Callable[[int, torch.Tensor], torch.Tensor]
    """(exit layer, hidden (R, H)) -> hidden (R, H)."""
    head: Callable[[torch.Tensor], torch.Tensor]
    """hidden (R, H) -> logits (R, V), shared by all exit layers."""

    def __call__(self, layer: int, hidden: torch.Tensor) -> torch.Tensor:
        return self.head(self.translate(layer, hidden))


def _identity(layer: int, hidden: torch.Tensor) -> torch.Tensor:
    return hidden


def norm_lens(model: nn.Module, arg: str | None = None) -> Lens:
    """The logit lens: unembed(final_norm(h))."""
    return Lens("norm", _identity, lambda h: arch.logit_lens(model, h, normalize=True))


def raw_lens(model: nn.Module, arg: str | None = None) -> Lens:
    """unembed(h) without the final norm, except at the last layer (as Hugging Face's hidden_states)."""
    last, norm = arch.num_layers(model), arch.final_norm(model)

    def translate(layer: int, hidden: torch.Tensor) -> torch.Tensor:
        return norm(hidden) if layer == last else hidden

    return Lens("raw", translate, lambda h: arch.unembed(model, h))
