"""Attention for decoding passes of a few positions per row on a CPU: grouped query heads folded.

With grouped key/value heads (SmolLM2: 9 query heads share 3 key/value heads), transformers' SDPA
path either copies the whole cache to every query head (`repeat_kv`) or asks SDPA to share it
(`enable_gqa`), which on a CPU still runs one small block per query head. A prompt-lookup pass
has only 1 + k queries per row, so those blocks are tiny. Folding the queries of a group into
one sequence, (B, heads, T, D) -> (B, kv heads, group * T, D), with the mask's rows repeated
to match, gives SDPA one larger block per key/value head, reading each key once:

    32 rows x 350 cached positions, 2 cores   T=3    T=5    T=8    T=16
    bf16, ms  enable_gqa / folded            1.48/0.80 1.57/0.95 1.79/1.19 2.35/2.21
    fp32, ms  enable_gqa / folded            1.17/1.03 1.50/1.37 1.71/1.95 3.17/3.34

The folded result is the same to the bit in these shapes (each query still sees the same keys in
the same order). Longer query blocks (prefill) are left to transformers' SDPA path, told to
share the key/value heads itself on a CPU (`grouped_kv_in_sdpa`).

Every layer of a forward pass gets the same bool mask, which SDPA turns into an additive float
one in each of them (and folding repeated its rows in each): on a CPU it is converted once per
pass instead (`additive_mask`), the same values SDPA would make, so the same output.
"""

from __future__ import annotations

import os
import threading
from contextlib import contextmanager

import torch
from torch import nn
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

from piilab.models import arch

NAME = "piilab_folded_sdpa"
FOLDED_QUERIES = {torch.float32: 15, torch.bfloat16: 24, torch.float16: 24}
"""The most folded queries per key/value head (group size x positions) for which folding was
faster in the measurements above, by dtype."""


def folded_sdpa(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                attention_mask: torch.Tensor | None, **kwargs):
    """transformers' attention-function signature: (B, T, heads, D) output, no weights."""
    groups = getattr(module, "num_key_value_groups", 1)
    batch, heads, length, dim = query.shape
    if not _foldable(query, groups, attention_mask, kwargs):
        if attention_mask is not None and query.device.type == "cpu":
            attention_mask = additive_mask(attention_mask, query.dtype)
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    folded = query.reshape(batch, heads // groups, groups * length, dim)  # query head h = g*groups + j
    mask = additive_mask(attention_mask, query.dtype, groups)  # row j*T + t is position t's
    out = nn.functional.scaled_dot_product_attention(folded, key, value, attn_mask=mask,
                                                     scale=kwargs.get("scaling"))
    return out.reshape(batch, heads, length, value.shape[-1]).transpose(1, 2).contiguous(), None


def _foldable(query: torch.Tensor, groups: int, mask: torch.Tensor | None, kwargs: dict) -> bool:
    limit = FOLDED_QUERIES.get(query.dtype, 0)
    plain = (not kwargs.get("dropout") and kwargs.get("position_bias") is None
             and kwargs.get("softcap") is None and not kwargs.get("output_attentions"))
    return (groups > 1 and groups * query.shape[2] <= limit and plain and mask is not None
            and mask.dim() == 4 and mask.shape[1] == 1 and query.device.type == "cpu")


_converted = threading.local()  # per thread: the masks converted last, for the next layers
KEPT_MASKS = 2
"""Converted masks kept per thread: a model with windowed layers alternates two masks per pass."""


def additive_mask(mask: torch.Tensor, dtype: torch.dtype, fold: int = 1) -> torch.Tensor:
    """SDPA's additive form of a bool `mask` (0 where True, -inf where False) in `dtype`, its query
    rows repeated `fold` times (a float mask is only repeated). The last masks converted are kept
    while their tensors are unchanged, so the layers of a pass that share one convert it once."""
    if mask.dtype != torch.bool:
        return mask.repeat(1, 1, fold, 1) if fold > 1 else mask
    kept, asked = getattr(_converted, "masks", []), (_version(mask), fold, dtype)
    for source, *made_for, additive in kept:
        if source is mask and tuple(made_for) == asked:
            return additive
    rows = mask.repeat(1, 1, fold, 1) if fold > 1 else mask
    additive = torch.zeros(rows.shape, dtype=dtype, device=mask.device).masked_fill_(~rows, float("-inf"))
    _converted.masks = [(mask, *asked, additive)] + kept[:KEPT_MASKS - 1]
    return additive


def _version(tensor: torch.Tensor) -> int | None:
    """The tensor's in-place change counter (an inference-mode tensor keeps none)."""
    return None if tensor.is_inference() else tensor._version


AttentionInterface.register(NAME, folded_sdpa)
AttentionMaskInterface.register(NAME, sdpa_mask)  # the masks SDPA takes


@contextmanager
def folded_attention(model: nn.Module):
    """Within: the model's SDPA attention folds grouped query heads where that is faster (a model
    on another attention implementation, eager or flash, is left as it is)."""
    config = arch.base_model(model).config
    before = config._attn_implementation
    if before != "sdpa":
        yield
        return
    config._attn_implementation = NAME
    try:
        yield
    finally:
        config._attn_implementation = before
        _converted.masks = []  # nothing of the last pass kept past the decoding


_FORCE_GQA = "TRANSFORMERS_SDPA_FORCE_GQA"  # read by transformers at every attention call
_gqa_lock = threading.Lock()
_gqa = {"users": 0, "before": None}  # decodings inside `grouped_kv_in_sdpa`; what was set before


@contextmanager
def grouped_kv_in_sdpa(device: torch.device):
    """On a CPU, let SDPA attend with grouped key/value heads itself (`enable_gqa`) instead of
    transformers copying the whole cache to every query head first (`repeat_kv`), which it does
    whenever there is a mask. Same answers (48 of 48 texts with piilab-pii), about 9% less time.
    Not on CUDA, where a mask with grouped heads falls back to SDPA's slow math kernel."""
    if device.type != "cpu":
        yield
        return
    # The variable is the process's, and two models' decodings in two threads overlap: the first
    # in sets it, the last out restores what was there before either.
    with _gqa_lock:
        if _gqa["users"] == 0:
            _gqa["before"] = os.environ.get(_FORCE_GQA)
            os.environ[_FORCE_GQA] = "1"
        _gqa["users"] += 1
    try:
        yield
    finally:
        with _gqa_lock:
            _gqa["users"] -= 1
            if _gqa["users"] == 0:
                if _gqa["before"] is None:
                    os.environ.pop(_FORCE_GQA, None)
                else:
                    os.environ[_FORCE_GQA] = _gqa["before"]


# ---------------------------------------------------------------- masks by position


def sliding_window(config) -> int | None:
    """The model's attention window in positions, where any of its layers has one (None: none)."""
    window = getattr(config, "sliding_window", None)
    types = getattr(config, "layer_types", None)
    if not window or (types is not None and "sliding_attention" not in types):
        return None
    return int(window)


def masks_by_position(held: torch.Tensor, queries: torch.Tensor, config):
    """Attention masks that let each query see the keys by position rather than by column: for a
    cache whose columns hold positions `held` (R, S; -1: hidden) out of order, as prompt-lookup's
    does (rejected drafts stay, hidden). A query at position q (`queries`, R x Q) sees a key at
    position k <= q, and in a sliding-window layer only k > q - window, as transformers' window
    counts positions. (R, 1, Q, S) bool masks: one per layer type of a model that names its
    layers' types (full or sliding attention), else the window's."""
    keys, asked = held[:, None, :], queries[:, :, None]
    causal = (keys >= 0) & (keys <= asked)
    windowed = causal & (keys > asked - sliding_window(config))
    types = getattr(config, "layer_types", None)
    if types is None:
        return windowed[:, None]
    return {"full_attention": causal[:, None], "sliding_attention": windowed[:, None]}
