"""LoRA's input dropout on a CPU, with masks drawn from packed random bits.

PEFT drops each LoRA layer's input with `nn.Dropout`, whose CPU kernel draws one Bernoulli sample
per element: on SmolLM2 with the demo's recipe, 420 masks per step took about a fifth of a bf16
step's CPU time on an AMD EPYC (docs/training.md, "LoRA dropout on a CPU"). `MaskDropout` does
the same thing (each element kept with probability 1 - p and scaled by 1 / (1 - p), a fresh
mask per call, the backward pass through the same mask) from 64-bit random integers split into
four 15-bit draws each; p is rounded to a multiple of 2^-15 (0.05 -> 0.050018). Masks come from
torch's default generator, so a seeded run repeats itself (and its checkpoints resume it), but
they are not the masks `nn.Dropout` would draw. On a GPU, `nn.Dropout`'s kernel is fast and stays.
"""

from __future__ import annotations

import torch
from torch import nn

BITS = 15
"""Random bits per kept-or-dropped decision."""


def keep_mask(shape: torch.Size, p: float, device: torch.device | str = "cpu") -> torch.Tensor:
    """A bool tensor of `shape`, each element True with probability 1 - p (to 2^-15)."""
    n = shape.numel()
    words = torch.empty((n + 3) // 4, dtype=torch.int64, device=device).random_()  # 63 random bits
    draws = words.view(torch.int16)[:n] & (2**BITS - 1)  # 4 draws of 15 bits per word
    return (draws >= round(p * 2**BITS)).view(shape)


class _Masked(torch.autograd.Function):
    """x * keep * scale, saving only the bool mask for the backward pass (as nn.Dropout does)."""

    @staticmethod
    def forward(ctx, x, keep, scale):
        ctx.save_for_backward(keep)
        ctx.scale = scale
        return x.mul(keep).mul_(scale)

    @staticmethod
    def backward(ctx, grad):
        (keep,) = ctx.saved_tensors
        return grad.mul(keep).mul_(ctx.scale), None, None


class MaskDropout(nn.Module):
    """nn.Dropout(p) for training on a CPU; the identity in eval mode or at p = 0."""

    def __init__(self, p: float) -> None:
        super().__init__()
        if not 0 <= p < 1:
            raise ValueError(f"dropout probability must be in [0, 1), not {p}")
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        return _Masked.apply(x, keep_mask(x.shape, self.p, x.device), 1 / (1 - self.p))

    def extra_repr(self) -> str:
        return f"p={self.p}"


def use_mask_dropout(model: nn.Module) -> int:
    """Swap every LoRA layer's `nn.Dropout` for a MaskDropout of the same p; how many were swapped."""
    swapped = 0
    for module in model.modules():
        dropouts = getattr(module, "lora_dropout", None)
        if not isinstance(dropouts, nn.ModuleDict):
            continue
        for name, dropout in dropouts.items():
            if type(dropout) is nn.Dropout and dropout.p > 0:
                dropouts[name] = MaskDropout(dropout.p)
                dropouts[name].train(dropout.training)
                swapped += 1
    return swapped
