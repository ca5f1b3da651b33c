"""Architecture-specific lookups, in one place: decoder layers, final norm, unembedding.

Everything else in piilab asks this module, so supporting a new architecture means adding one
row to `ARCHITECTURES`. The logit lens is one line: `unembed(model, final_norm(model)(h))`.
"""

from __future__ import annotations

import functools
import threading
import weakref
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from piilab.errors import PiilabError


@dataclass(frozen=True)
class ArchSpec:
    """Where one family keeps its parts, as attribute paths from the *ForCausalLM module.

    The unembedding needs no entry: every *ForCausalLM answers `get_output_embeddings()`.
    """

    layers: str
    final_norm: str


_LLAMA_LIKE = ArchSpec("model.layers", "model.norm")

ARCHITECTURES: dict[str, ArchSpec] = {
    "llama": _LLAMA_LIKE,  # SmolLM2 is a Llama
    "mistral": _LLAMA_LIKE,
    "qwen2": _LLAMA_LIKE,
    "qwen3": _LLAMA_LIKE,
    "gemma": _LLAMA_LIKE,
    "gemma2": _LLAMA_LIKE,
    "gemma3_text": _LLAMA_LIKE,
    "phi3": _LLAMA_LIKE,
    "phi": ArchSpec("model.layers", "model.final_layernorm"),
    "gpt2": ArchSpec("transformer.h", "transformer.ln_f"),
    "gpt_neox": ArchSpec("gpt_neox.layers", "gpt_neox.final_layer_norm"),
}


def base_model(model: nn.Module) -> nn.Module:
    """The plain *ForCausalLM module under any PEFT wrapper."""
    while hasattr(model, "get_base_model"):
        model = model.get_base_model()
    return model


def model_type(model: nn.Module) -> str:
    return getattr(base_model(model).config, "model_type", type(model).__name__)


def arch_spec(model_or_type: nn.Module | str) -> ArchSpec:
    """The lookup table row for a model (or a config's `model_type`), or a clear error."""
    name = model_or_type if isinstance(model_or_type, str) else model_type(model_or_type)
    try:
        return ARCHITECTURES[name]
    except KeyError:
        supported = ", ".join(sorted(ARCHITECTURES))
        raise PiilabError(
            f"unsupported architecture {name!r}: piilab knows {supported}"
        ) from None


def _get(root: nn.Module, path: str) -> nn.Module:
    for part in path.split("."):
        root = getattr(root, part)
    return root


def _set(root: nn.Module, path: str, value: nn.Module) -> None:
    *parents, last = path.split(".")
    for part in parents:
        root = getattr(root, part)
    setattr(root, last, value)


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The list of decoder blocks, first to last."""
    return _get(base_model(model), arch_spec(model).layers)


def num_layers(model: nn.Module) -> int:
    return len(decoder_layers(model))


def backbone(model: nn.Module) -> nn.Module:
    """The decoder stack without the LM head (the module that owns the layer list)."""
    path = arch_spec(model).layers.rpartition(".")[0]
    return _get(base_model(model), path) if path else base_model(model)


def context_window(model: nn.Module) -> int | None:
    """The most positions the model can attend over (None when its config does not say)."""
    config = base_model(model).config
    for name in ("max_position_embeddings", "n_positions", "max_sequence_length"):
        value = getattr(config, name, None)
        if value:
            return int(value)
    return None


def final_norm(model: nn.Module) -> nn.Module:
    """The norm applied after the last decoder block."""
    return _get(base_model(model), arch_spec(model).final_norm)


def unembedding(model: nn.Module) -> nn.Module:
    """The output projection from hidden states to vocabulary logits."""
    arch_spec(model)
    return base_model(model).get_output_embeddings()


def unembed(model: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
    """Logits from (already normalised) hidden states, with the model's own logit soft-capping."""
    logits = unembedding(model)(_in_head_dtype(model, hidden))
    cap = getattr(base_model(model).config, "final_logit_softcapping", None)
    if cap:
        logits = torch.tanh(logits / cap) * cap
    return logits


@contextmanager
def unembedding_swapped(model: nn.Module, head: nn.Module):
    """Unembed with `head` instead of the model's output projection, restoring it afterwards."""
    root = base_model(model)
    original = root.get_output_embeddings()
    root.set_output_embeddings(head)
    try:
        yield
    finally:
        root.set_output_embeddings(original)


def logit_lens(model: nn.Module, hidden: torch.Tensor, normalize: bool = True) -> torch.Tensor:
    """The logit lens: unembed(final_norm(h)); `normalize=False` is the original 'raw' variant.
    The head computes in its own dtype, whatever the blocks computed in (linears.py's bfloat16)."""
    hidden = _in_head_dtype(model, hidden)
    return unembed(model, final_norm(model)(hidden) if normalize else hidden)


def _in_head_dtype(model: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
    """`hidden` in the dtype of a floating-point unembedding weight (as it is otherwise)."""
    weight = getattr(unembedding(model), "weight", None)
    floating = weight is not None and weight.is_floating_point()
    return hidden.to(weight.dtype) if floating else hidden


_LOCKS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_LOCKS_GUARD = threading.Lock()


def model_lock(model: nn.Module) -> threading.RLock:
    """The lock a decoding call holds on its model. Decoding changes the model in place while it
    runs (`truncated`, the attention implementation, swapped linear layers), so calls on one model
    from several threads (a web service's workers) must take turns."""
    root = base_model(model)
    with _LOCKS_GUARD:
        return _LOCKS.setdefault(root, threading.RLock())


def one_at_a_time(function: Callable) -> Callable:
    """Decorates a function whose first argument is a model: calls on one model take turns."""
    @functools.wraps(function)
    def taking_turns(model, *args, **kwargs):
        with model_lock(model):
            return function(model, *args, **kwargs)
    return taking_turns


@contextmanager
def truncated(model: nn.Module, n_layers: int,
              wrap: Callable[[int, nn.Module], nn.Module] | None = None):
    """Run the model with only its first `n_layers` decoder blocks, restoring it afterwards.

    Swaps the layer list and `config.num_hidden_layers` (plus per-layer config lists such as
    `layer_types`), which is what `generate` and the KV cache read. `wrap(i, block)`, when given,
    puts a wrapper around block i (1-based) for the duration. This changes the model in place:
    the decoding functions that call it take turns on a model (`one_at_a_time`).
    """
    total = num_layers(model)
    if not 1 <= n_layers <= total:
        raise PiilabError(f"exit layer {n_layers} is out of range: the model has layers 1..{total}")
    root, spec = base_model(model), arch_spec(model)
    config = root.config
    full_layers = _get(root, spec.layers)
    saved = {name: getattr(config, name) for name in ("num_hidden_layers", "layer_types")
             if getattr(config, name, None) is not None}
    kept = list(full_layers)[:n_layers]
    if wrap is not None:
        kept = [wrap(i, block) for i, block in enumerate(kept, 1)]
    _set(root, spec.layers, nn.ModuleList(kept))
    config.num_hidden_layers = n_layers
    if "layer_types" in saved:
        config.layer_types = list(saved["layer_types"])[:n_layers]
    try:
        yield model
    finally:
        _set(root, spec.layers, full_layers)
        for name, value in saved.items():
            setattr(config, name, value)
