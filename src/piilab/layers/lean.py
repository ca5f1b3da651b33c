"""Llama decoder blocks in fewer tensor operations, while their linear layers are bf16 copies.

With the linear layers in bf16 on a CPU with native bf16, a decoding pass of a small model costs
about as much in per-operation overhead as in products: transformers' LlamaDecoderLayer runs some
250 tensor operations per block per pass (three query/key/value products, two gate/up ones, norm
casts and hooks, the rotary embedding's halves twice, views), and on 2 cores a pass of one row
took 35 ms, of which its 210 products were 15. Within `linears_swapped(model, "bfloat16")` each
Llama block is replaced by a LeanBlock with the same math:

- one product for the query, key and value projections, and one for the gate and up ones (each
  a copy of the weights side by side, so no weight is held twice);
- the norms computed inline from the residual stream and handed on in bf16 (what the norm and
  the bf16 hook on it did, in one call less);
- the rotary embedding applied to queries and keys at once.

Only blocks whose every part is Llama's own (SmolLM2, Llama 2 and 3) are replaced; any other block
runs as it is.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.models.llama.modeling_llama import eager_attention_forward

PARTS = {"": "LlamaDecoderLayer", "self_attn": "LlamaAttention", "mlp": "LlamaMLP",
         "input_layernorm": "LlamaRMSNorm", "post_attention_layernorm": "LlamaRMSNorm"}
"""A block is replaced only when it and its parts are of these classes (by name)."""
LINEARS = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
           "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")

Copy = Callable[..., nn.Module]
"""copy(*linear layers) -> one frozen linear layer giving their outputs side by side."""


class LeanBlock(nn.Module):
    """A Llama decoder block's forward in fewer operations, with frozen copies of its linear
    layers in `dtype`; takes and gives the residual stream in its own dtype, as the block did."""

    def __init__(self, block: nn.Module, copy: Copy, dtype: torch.dtype) -> None:
        super().__init__()
        attention, mlp, config = block.self_attn, block.mlp, block.self_attn.config
        self.dtype, self.config = dtype, config
        self.layer_idx, self.head_dim = attention.layer_idx, attention.head_dim
        self.scaling, self.heads, self.kv_heads = (attention.scaling, config.num_attention_heads,
                                                   config.num_key_value_heads)
        # what attention functions read of the module they are given
        self.num_key_value_groups, self.is_causal = attention.num_key_value_groups, True
        self.input_layernorm = block.input_layernorm
        self.post_attention_layernorm = block.post_attention_layernorm
        self.qkv = copy(attention.q_proj, attention.k_proj, attention.v_proj)
        self.o_proj = copy(attention.o_proj)
        self.gate_up = copy(mlp.gate_proj, mlp.up_proj)
        self.down_proj = copy(mlp.down_proj)

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None,
                cache=None, position_embeddings: tuple[torch.Tensor, torch.Tensor] | None = None,
                **kwargs):
        """As LlamaDecoderLayer's; the other arguments (position ids, use_cache) go on to the
        attention function, as transformers' block passes them."""
        rows, length, _ = hidden_states.shape
        states = self.qkv(self._normed(self.input_layernorm, hidden_states))
        states = states.view(rows, length, -1, self.head_dim).transpose(1, 2)  # (B, q + 2 kv heads, T, D)
        cos, sin = (t.to(self.dtype)[:, None] for t in position_embeddings)
        rotated = _rotated(states[:, :self.heads + self.kv_heads], cos, sin)
        query, key = rotated[:, :self.heads], rotated[:, self.heads:]
        value = states[:, self.heads + self.kv_heads:]
        if cache is not None:
            key, value = cache.update(key, value, self.layer_idx)
        attend = ALL_ATTENTION_FUNCTIONS.get_interface(self.config._attn_implementation,
                                                       eager_attention_forward)
        out, _ = attend(self, query, key, value, attention_mask, dropout=0.0, scaling=self.scaling,
                        **kwargs)
        hidden_states = hidden_states + self.o_proj(out.reshape(rows, length, -1))
        gate, up = self.gate_up(self._normed(self.post_attention_layernorm, hidden_states)).chunk(2, dim=-1)
        return hidden_states + self.down_proj(nn.functional.silu(gate) * up)

    def _normed(self, norm: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
        """LlamaRMSNorm's sums (in float32, back to the stream's dtype, times its weight), in `dtype`."""
        states = hidden.to(torch.float32)
        states = states * torch.rsqrt(states.pow(2).mean(-1, keepdim=True) + norm.variance_epsilon)
        return (norm.weight * states.to(hidden.dtype)).to(self.dtype)


def _rotated(states: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """The rotary embedding as transformers' Llama applies it: x cos + rotate_half(x) sin."""
    half = states.shape[-1] // 2
    return states * cos + torch.cat((-states[..., half:], states[..., :half]), dim=-1) * sin


def is_llama_block(block: nn.Module) -> bool:
    """Whether the block and its parts are Llama's own classes, with a SiLU MLP."""
    named = {"": block} | {name: getattr(block, name, None) for name in PARTS if name}
    return (all(type(named[name]).__name__ == cls for name, cls in PARTS.items())
            and getattr(block.self_attn.config, "hidden_act", None) == "silu")
