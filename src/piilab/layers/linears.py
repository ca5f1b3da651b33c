"""Decoding-time copies of a model's linear layers: LoRA merged into each weight, optionally in bf16.

A LoRA-wrapped linear layer costs its base product plus two small products and PEFT's Python per
call; a decode pass of SmolLM2 makes 210 such calls. Inside `linears_swapped(model, precision)`
every linear layer of the decoder blocks is one plain product with a copy of its effective weight
(W + scale * B A for each active adapter), in the model's dtype ("merged") or bfloat16
("bfloat16", for CPUs and GPUs with native bf16). With "bfloat16" the decoder blocks compute in
bfloat16 throughout (their norms and attention, so the key-value cache too): the embeddings'
output is cast down, and the final norm keeps the model's dtype. The unembedding then scores the
whole vocabulary in bfloat16 and its SHORTLIST best tokens again in the model's dtype
(ShortlistHead), so near-equal logits of the likely tokens are not rounded into ties. The model is
whole again on leaving.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import nn

from piilab.errors import PiilabError
from piilab.layers.ranking import top_k
from piilab.models import arch

PRECISIONS = ("exact", "merged", "bfloat16")
SHORTLIST = 64
"""Tokens per position whose logits the bfloat16 unembedding computes again exactly; more than
copy-constrained decoding's TOP_K (50) candidates."""


class FrozenLinear(nn.Module):
    """y = x W^T + b with a fixed copy of W in its own dtype; the output is in x's dtype."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, dtype: torch.dtype) -> None:
        super().__init__()
        self.register_buffer("weight", weight.detach().to(dtype).contiguous(), persistent=False)
        self.register_buffer("bias", None if bias is None else bias.detach().to(dtype),
                             persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == self.weight.dtype:
            return nn.functional.linear(x, self.weight, self.bias)
        return nn.functional.linear(x.to(self.weight.dtype), self.weight, self.bias).to(x.dtype)


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
        self.register_buffer("low", head.weight.detach().to(torch.bfloat16), persistent=False)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        flat = hidden.reshape(-1, hidden.shape[-1]).to(self.weight.dtype)
        logits = nn.functional.linear(flat.to(torch.bfloat16), self.low).to(self.weight.dtype)
        if self.bias is not None:
            logits += self.bias
        top = top_k(logits, self.shortlist)[1]  # (N, S)
        exact = torch.bmm(self.weight[top], flat[:, :, None])[..., 0]  # (N, S)
        if self.bias is not None:
            exact += self.bias[top]
        logits.scatter_(-1, top, exact)
        return logits.view(*hidden.shape[:-1], -1)


def _is_lora_linear(module: nn.Module) -> bool:
    return hasattr(module, "get_delta_weight") and isinstance(getattr(module, "base_layer", None),
                                                             nn.Linear)


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


def _replaceable(block: nn.Module):
    """(parent, attribute, module) of each linear layer in a block, LoRA-wrapped ones whole."""
    found, stack = [], [block]
    while stack:
        parent = stack.pop()
        for name, child in parent.named_children():
            if _is_lora_linear(child) or type(child) is nn.Linear:
                found.append((parent, name, child))
            elif isinstance(child, nn.Linear):
                continue  # another wrapper of a linear layer (quantized, say): left as it is
            else:
                stack.append(child)
    return found


@contextmanager
def linears_swapped(model: nn.Module, precision: str = "merged"):
    """Within: the decoder blocks' linear layers compute with frozen copies in `precision`
    ("exact" leaves the model as it is)."""
    if precision not in PRECISIONS:
        raise PiilabError(f"unknown linear precision {precision!r}: use {', '.join(PRECISIONS)}")
    if precision == "exact":
        yield model
        return
    swaps = []
    for block in arch.decoder_layers(model):
        for parent, name, module in _replaceable(block):
            weight, bias = effective_weight(module)
            dtype = torch.bfloat16 if precision == "bfloat16" else weight.dtype
            with torch.no_grad():
                setattr(parent, name, FrozenLinear(weight, bias, dtype))
            swaps.append((parent, name, module))
    lowered, hook, head = [], None, None
    if precision == "bfloat16":
        lowered = _blocks_lowered(model, torch.bfloat16)
        embeddings = arch.base_model(model).get_input_embeddings()
        hook = embeddings.register_forward_hook(lambda _, __, out: out.to(torch.bfloat16))
        head = arch.unembedding(model)
        if type(head) is nn.Linear:
            arch.base_model(model).set_output_embeddings(ShortlistHead(head, SHORTLIST))
        else:
            head = None  # a head of another kind stays, and nothing is restored
    try:
        yield model
    finally:
        if head is not None:
            arch.base_model(model).set_output_embeddings(head)
        if hook is not None:
            hook.remove()
        for param, data in lowered:
            param.data = data
        for parent, name, module in swaps:
            setattr(parent, name, module)


def _blocks_lowered(model: nn.Module, dtype: torch.dtype) -> list[tuple[nn.Parameter, torch.Tensor]]:
    """Cast the decoder blocks' other floating parameters (norms) to `dtype`, in place; each
    parameter with its original data, to restore."""
    lowered = []
    for block in arch.decoder_layers(model):
        for param in block.parameters():
            if param.is_floating_point() and param.dtype != dtype:
                lowered.append((param, param.data))
                param.data = param.data.to(dtype)
    return lowered
