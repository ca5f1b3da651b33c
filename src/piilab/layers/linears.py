"""Decoding-time copies of a model's linear layers: LoRA merged into each weight, optionally in bf16.

A LoRA-wrapped linear layer costs its base product plus two small products and PEFT's Python per
call; a decode pass of SmolLM2 makes 210 such calls. Inside `linears_swapped(model, precision)`
every linear layer of the decoder blocks is one plain product with a copy of its effective weight
(W + scale * B A for each active adapter), in the model's dtype ("merged") or bfloat16
("bfloat16", for CPUs and GPUs with native bf16; prepacked for oneDNN on a CPU). With "bfloat16"
the decoder blocks compute in bfloat16 (products, attention, so the key-value cache too) while the
residual stream between and around them keeps the model's dtype: each block norm reads it and
gives bf16, and each block's bf16 updates are added to it. The final norm keeps the model's dtype.
The unembedding then scores the whole vocabulary in bfloat16 and its SHORTLIST best tokens again
in the model's dtype (ShortlistHead), so near-equal logits of the likely tokens are not rounded
into ties. With "bfloat16", Llama's own blocks are replaced whole by lean ones (layers/lean.py: one
product for q, k and v, one for gate and up). The model is whole again on leaving.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager

import torch
from torch import nn

from piilab.errors import PiilabError
from piilab.layers.lean import LINEARS as LEAN_LINEARS, LeanBlock, is_llama_block
from piilab.layers.ranking import top_k
from piilab.models import arch
from piilab.runtime import cpu_supports_bf16

PRECISIONS = ("exact", "merged", "bfloat16")
SHORTLIST = 64
"""Tokens per position whose logits the bfloat16 unembedding computes again exactly; more than
copy-constrained decoding's TOP_K (50) candidates."""


PACKED_FOR_ROWS = 128
"""Rows per product that a prepacked weight's layout is chosen for (decoding's passes have
25-200 rows, prefills thousands; every choice from 64 to 2,048 ran as fast)."""

Product = Callable[[torch.Tensor, "torch.Tensor | None"], torch.Tensor]


def packed_product(weight: torch.Tensor) -> Product | None:
    """x -> x W^T + b with a bf16 `weight` prepacked in oneDNN's blocked layout, on a CPU with
    native bf16; else None. A product with a plain weight reorders it at every call: with a small
    batch of rows that is most of the call (70 against 34 us for 25 x 576 x 1,536 on a Xeon with
    AMX). The same sums, blocked (so rounded) differently in some shapes. No autograd: decoding
    only. (float32 is left to MKL's own product: packing it for MKL gained 1% in extraction.)"""
    if weight.dtype != torch.bfloat16 or weight.device.type != "cpu" or not cpu_supports_bf16():
        return None
    try:
        packed = torch.ops.mkldnn._reorder_linear_weight(weight, PACKED_FOR_ROWS)
    except (AttributeError, RuntimeError):  # a torch built without oneDNN
        return None
    return lambda x, bias: torch.ops.mkldnn._linear_pointwise(x, packed, bias, "none", [], "")


class FrozenLinear(nn.Module):
    """y = x W^T + b with a fixed copy of W in `dtype`, for decoding; the output is in x's dtype.
    Where `packed_product` can pack the copy, only the packed one is kept (a model's bf16 copies
    would otherwise take their memory twice), and a product that wants a gradient is refused."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, dtype: torch.dtype) -> None:
        super().__init__()
        self.dtype = dtype
        plain = weight.detach().to(dtype).contiguous()
        self.packed = packed_product(plain)
        self.register_buffer("weight", plain if self.packed is None else None, persistent=False)
        self.register_buffer("bias", None if bias is None else bias.detach().to(dtype),
                             persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype != self.dtype:
            return self(x.to(self.dtype)).to(x.dtype)
        if self.packed is None:
            return nn.functional.linear(x, self.weight, self.bias)
        if torch.is_grad_enabled() and x.requires_grad:
            raise PiilabError("a prepacked linear copy computes no gradient: it is for decoding")
        return self.packed(x, self.bias)


class ShortlistHead(nn.Module):
    """An unembedding whose logits are exact (in its weight's dtype) for the `shortlist` most likely
    tokens of each position and bfloat16 products for the rest.

    The full head in float32 is a tenth of a bf16 extraction's time on a CPU; in bfloat16 alone,
    logits within its rounding error tie, and greedy choices flip. A token outside the bf16
    shortlist has an exact logit below the shortlist's best only if bf16 misjudged it by more than
    the gap to `shortlist` others, so greedy (and constrained greedy, which looks at the top
    TOP_K) choices are the exact head's."""

    def __init__(self, head: nn.Linear, shortlist: int) -> None:
        super().__init__()
        self.weight, self.bias, self.shortlist = head.weight, head.bias, shortlist
        self.low = FrozenLinear(head.weight, None, torch.bfloat16)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        flat = hidden.reshape(-1, hidden.shape[-1]).to(self.weight.dtype)
        logits = self.low(flat)  # bf16 product, in the head's dtype
        if self.bias is not None:
            logits += self.bias
        top = top_k(logits, self.shortlist)[1]  # (N, S)
        # the shortlisted rows of the weight (N, S, H); index_select takes half weight[top]'s time
        rows = self.weight.index_select(0, top.flatten()).view(*top.shape, -1)
        exact = torch.bmm(rows, flat[:, :, None])[..., 0]  # (N, S)
        if self.bias is not None:
            exact += self.bias[top]
        logits.scatter_(-1, top, exact)
        return logits.view(*hidden.shape[:-1], -1)


def _is_lora_linear(module: nn.Module) -> bool:
    """A LoRA layer over a plain linear one: over a subclass (bitsandbytes' 4- and 8-bit layers
    are nn.Linear subclasses), `weight` is not what the layer multiplies by, so it is left alone."""
    return hasattr(module, "get_delta_weight") and type(getattr(module, "base_layer", None)) is nn.Linear


def effective_weight(module: nn.Module) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(weight, bias) the module applies: a plain linear's own, or a LoRA layer's base weight plus
    the update of each active adapter (unless PEFT has merged them already or disabled them)."""
    if isinstance(module, nn.Linear):
        return module.weight, module.bias
    base = module.base_layer
    weight = base.weight
    if not getattr(module, "merged", False) and not getattr(module, "disable_adapters", False):
        for name in module.active_adapters:
            if getattr(module, "use_dora", {}).get(name):
                raise PiilabError("a DoRA adapter cannot be merged into a linear copy: use "
                                  "--linear exact")
            if name in module.lora_A:
                weight = weight + module.get_delta_weight(name).to(weight.dtype)
    return weight, base.bias


def _copyable(module: nn.Module) -> bool:
    return _is_lora_linear(module) or type(module) is nn.Linear


def _frozen(modules, dtype: torch.dtype | None) -> FrozenLinear:
    """One frozen copy of the modules' effective weights side by side (their outputs
    concatenated), in `dtype` (None: the weights' own)."""
    weights, biases = zip(*map(effective_weight, modules))
    bias = None
    if any(b is not None for b in biases):
        bias = torch.cat([b if b is not None else w.new_zeros(w.shape[0]) for w, b in zip(weights, biases)])
    weight = weights[0] if len(weights) == 1 else torch.cat(weights)
    return FrozenLinear(weight, bias, dtype or weight.dtype)


def _leanable(block: nn.Module) -> bool:
    """A Llama block (layers/lean.py) whose linear layers can all be copied."""
    return is_llama_block(block) and all(_copyable(block.get_submodule(name)) for name in LEAN_LINEARS)


def _replaceable(block: nn.Module):
    """(parent, attribute, module) of each linear layer in a block, LoRA-wrapped ones whole."""
    found, stack = [], [block]
    while stack:
        parent = stack.pop()
        for name, child in parent.named_children():
            if _copyable(child):
                found.append((parent, name, child))
            elif isinstance(child, nn.Linear) or hasattr(child, "get_delta_weight"):
                continue  # a linear layer of another kind (quantized, say), or LoRA over one: as it is
            else:
                stack.append(child)
    return found


SWAPPED = "_piilab_linears"
"""The model attribute naming the precision of the copies swapped in, while they are."""


@contextmanager
def linears_swapped(model: nn.Module, precision: str = "merged"):
    """Within: the decoder blocks' linear layers compute with frozen copies in `precision`
    ("exact" leaves the model as it is). Inside a swap of the same precision it does nothing
    (piilab.extract.prepared keeps one swap for many calls)."""
    if precision not in PRECISIONS:
        raise PiilabError(f"unknown linear precision {precision!r}: use {', '.join(PRECISIONS)}")
    swapped = getattr(model, SWAPPED, None)
    if precision == swapped or (precision == "exact" and swapped is None):
        yield model
        return
    if swapped is not None:
        raise PiilabError(f"the model's linear layers are {swapped} copies here: {precision} "
                          "ones cannot be swapped in inside")
    swaps, lowered, hooks, head = [], [], [], None
    try:  # a copy refused midway (a DoRA adapter's) leaves the model as it was
        _swap_in_copies(model, precision, swaps)
        if precision == "bfloat16":
            lowered = _blocks_lowered(model, torch.bfloat16)
            hooks = _bf16_outputs(model)
            head = arch.unembedding(model)
            if type(head) is nn.Linear:
                arch.base_model(model).set_output_embeddings(ShortlistHead(head, SHORTLIST))
            else:
                head = None  # a head of another kind stays, and nothing is restored
        setattr(model, SWAPPED, precision)
        yield model
    finally:
        if hasattr(model, SWAPPED):
            delattr(model, SWAPPED)
        if head is not None:
            arch.base_model(model).set_output_embeddings(head)
        for hook in hooks:
            hook.remove()
        for param, data in lowered:
            param.data = data
        for parent, name, module in reversed(swaps):
            setattr(parent, name, module)


def _swap_in_copies(model: nn.Module, precision: str, swaps: list) -> None:
    """Put frozen copies in place of the decoder blocks' linear layers (with "bfloat16", lean
    blocks in place of Llama's, layers/lean.py), noting each (parent, name, original) in `swaps`
    as it goes."""
    blocks = arch.decoder_layers(model)
    for index, block in enumerate(blocks):
        if precision == "bfloat16" and _leanable(block):
            with torch.no_grad():
                blocks[index] = LeanBlock(block, lambda *parts: _frozen(parts, torch.bfloat16),
                                          torch.bfloat16)
            swaps.append((blocks, str(index), block))
            continue
        for parent, name, module in _replaceable(block):
            dtype = torch.bfloat16 if precision == "bfloat16" else None
            with torch.no_grad():
                setattr(parent, name, _frozen([module], dtype))
            swaps.append((parent, name, module))


def _is_norm(module: nn.Module) -> bool:
    return "norm" in type(module).__name__.lower()


def _block_modules(model: nn.Module):
    """Every module inside the decoder blocks (the blocks themselves included)."""
    return (module for block in arch.decoder_layers(model) for module in block.modules())


def _blocks_lowered(model: nn.Module, dtype: torch.dtype) -> list[tuple[nn.Parameter, torch.Tensor]]:
    """Cast the decoder blocks' floating parameters other than the norms' to `dtype`, in place
    (the linear layers' are copies already); each parameter with its original data, to restore."""
    lowered = []
    params = (param for module in _block_modules(model) if not _is_norm(module)
              for param in module.parameters(recurse=False))
    for param in params:
        if param.is_floating_point() and param.dtype != dtype:
            lowered.append((param, param.data))
            param.data = param.data.to(dtype)
    return lowered


def _cast_to_bf16(_module, _inputs, output):
    if isinstance(output, tuple):
        return tuple(t.to(torch.bfloat16) for t in output)
    return output.to(torch.bfloat16)


def _bf16_outputs(model: nn.Module) -> list:
    """Hooks that hand the blocks bf16 inputs while their residual stream keeps the model's dtype:
    each norm inside a block computes from that stream with its own weights and gives bf16, and
    the rotary embedding's cos and sin are cast down so that queries and keys stay bf16. Adding
    bf16 updates to a float32 stream rounds a third less (mean logit error 0.056 against 0.084
    with a bf16 stream, SmolLM2)."""
    hooks = [module.register_forward_hook(_cast_to_bf16) for module in _block_modules(model)
             if _is_norm(module)]
    hooks += [module.register_forward_hook(_cast_to_bf16) for module in model.modules()
              if "rotary" in type(module).__name__.lower()]
    return hooks
