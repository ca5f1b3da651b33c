"""The pieces piilab adds to TRL's SFTTrainer: the loss, the run log, a quiet progress bar.

The loss projects only the positions that carry a label (the answer and its EOS) through the
unembedding. TRL 1.16 scores every position on CPUs (its compact path is Triton-only), and the
prompt is most of each sequence here, so this skips most of the (tokens x vocabulary) work.
The loss is computed inside the model's `forward` (patched, like TRL's own fused head) so that
DDP, FSDP and DeepSpeed see an ordinary forward call.

Early-exit training (`--exit-layers`, LayerSkip's loss without its layer dropout) adds the same
loss at chosen decoder blocks, read through the logit lens (`arch.logit_lens`): forward hooks
catch those blocks' outputs during the one backbone pass, so no other layer's states are kept.
"""

from __future__ import annotations

import contextlib
import logging
import types
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from transformers.utils import ModelOutput
from trl import SFTTrainer

from piilab.errors import PiilabError
from piilab.models import arch

log = logging.getLogger(__name__)

IGNORE_INDEX = -100  # as piilab.train.IGNORE_INDEX and PyTorch's cross_entropy default
LOG_COLUMNS = ("step", "epoch", "loss", "lr", "eval_loss", "grad_norm", "token_accuracy", "tokens")
LAYER_LOSS = "exit_loss_L"  # + the layer: per-layer loss columns of a run with --exit-layers


# ---------------------------------------------------------------- loss


@dataclass
class CompletionLossOutput(ModelOutput):
    """What the patched forward returns in loss mode: no logits, just the loss and its counts."""

    loss: torch.Tensor | None = None
    num_tokens: torch.Tensor | None = None  # labelled positions in this micro-batch
    num_correct: torch.Tensor | None = None  # of those, where the argmax was the label
    layer_loss_sums: torch.Tensor | None = None  # (k+1,) summed CE at each exit layer, then the last


def token_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed cross-entropy (in float32, whatever the autocast dtype) and the number of argmax hits."""
    loss_sum = F.cross_entropy(logits.float(), targets, reduction="sum")
    correct = (logits.detach().argmax(-1) == targets).sum()
    return loss_sum, correct


def labelled_positions(labels: torch.Tensor) -> torch.Tensor:
    """Where a (B, T) batch's loss is taken: the flat positions b * T + t whose next token is
    labelled (the answer and its EOS). The collator computes them on the CPU (`AnswerIndexed`), so
    a GPU step never waits to learn how many positions there are, as a boolean mask makes it."""
    rows, columns = (labels[:, 1:] != IGNORE_INDEX).nonzero(as_tuple=True)
    return rows * labels.shape[1] + columns


class AnswerIndexed:
    """A data collator whose batches also carry `answer_index` (`labelled_positions`)."""

    def __init__(self, collate) -> None:
        self.collate = collate

    def __call__(self, features):
        batch = self.collate(features)
        batch["answer_index"] = labelled_positions(batch["labels"])
        return batch


MIN_SHARED_PREFIX = 8  # shorter shared prefixes are not worth a second backbone call


def shared_prefix_length(input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> int:
    """How many leading tokens every row of a (B, T) batch has in common (real tokens only)."""
    same = (input_ids == input_ids[:1]).all(0)  # (T,)
    if attention_mask is not None:
        same &= attention_mask.bool().all(0)
    return int(same.long().cumprod(0).sum())


def _cache_kwarg(backbone) -> str:
    """transformers 5 renames `past_key_values` to `cache` model by model."""
    import inspect

    params = inspect.signature(backbone.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def backbone_hidden(model, input_ids, attention_mask=None, share_prefix=True, **kwargs) -> torch.Tensor:
    """Final hidden states (B, T, H) of a *ForCausalLM's backbone, final norm applied.

    With `share_prefix`, a prefix that every row shares (the prompt's instructions, in piilab's
    data) runs once for one row; its keys and values are repeated for the batch and the rows'
    own tokens attend to them, like a prefilled cache. Exact under causal attention (only LoRA
    dropout masks are shared on the prefix), and backprop sums the rows' gradients into it.
    """
    from transformers import DynamicCache

    backbone = getattr(model, model.base_model_prefix)
    batch, length = input_ids.shape
    shared = shared_prefix_length(input_ids, attention_mask) if share_prefix and batch > 1 else 0
    shared = min(shared, length - 1)
    if shared < MIN_SHARED_PREFIX or "position_ids" in kwargs or getattr(model, "is_activation_checkpointing", False):
        return backbone(input_ids=input_ids, attention_mask=attention_mask, **kwargs).last_hidden_state
    cache_name = _cache_kwarg(backbone)
    cache = DynamicCache(config=model.config)
    positions = torch.arange(length, device=input_ids.device).unsqueeze(0)
    prefix = backbone(input_ids=input_ids[:1, :shared], position_ids=positions[:, :shared],
                      **{cache_name: cache}, **{**kwargs, "use_cache": True}).last_hidden_state  # (1, P, H)
    cache.batch_repeat_interleave(batch)  # (B, heads, P, d) per layer, gradients flow back to row 0
    rest = backbone(input_ids=input_ids[:, shared:], attention_mask=attention_mask,
                    position_ids=positions[:, shared:].expand(batch, -1),
                    **{cache_name: cache}, **{**kwargs, "use_cache": True}).last_hidden_state  # (B, T-P, H)
    return join_pieces([prefix, rest], batch)


def join_pieces(pieces: Sequence[torch.Tensor], batch: int) -> torch.Tensor:
    """(B, T, H) states from one backbone call's output, or from `backbone_hidden`'s two calls
    with a shared prefix: the prefix's (1, P, H) expanded to the batch, then the rest (B, T-P, H)."""
    if len(pieces) == 1:
        return pieces[0]
    prefix, rest = pieces
    return torch.cat([prefix.expand(batch, -1, -1), rest], dim=1)


@contextlib.contextmanager
def block_outputs(model, layers: Sequence[int]) -> Iterator[dict[int, list[torch.Tensor]]]:
    """Collect what decoder blocks `layers` (1-based) output, one tensor per backbone call.

    Forward hooks, removed on exit. Gradient checkpointing wraps a block's `forward`, not its
    `__call__`, so the hooks see the checkpointed output (with its graph) and do not fire again
    when the backward pass recomputes the block.
    """
    caught: dict[int, list[torch.Tensor]] = {layer: [] for layer in layers}
    blocks = arch.decoder_layers(model)

    def hook(layer):
        def keep(module, args, output):
            caught[layer].append(output[0] if isinstance(output, tuple) else output)
        return keep

    handles = [blocks[layer - 1].register_forward_hook(hook(layer)) for layer in layers]
    try:
        yield caught
    finally:
        for handle in handles:
            handle.remove()


def check_exit_layers(layers: Sequence[int], total: int) -> list[int]:
    """Exit layers for training, deduplicated and ascending; each must lie in 1..total-1."""
    layers = sorted(set(layers))
    bad = [layer for layer in layers if not 1 <= layer < total]
    if bad:
        raise PiilabError(f"--exit-layers {bad[0]} is out of range: the model has {total} decoder "
                          f"layers, so an exit layer lies in 1..{total - 1} (layer {total} is the "
                          "ordinary loss)")
    return layers


def scheduled_exit_weight(schedule: str, weight: float, step: int, max_steps: int) -> float:
    """The exit-loss weight at 0-based optimizer step `step` of `max_steps`.

    constant: `weight` throughout; linear: 0 at the first step rising to `weight` at the last.
    """
    if schedule == "constant":
        return weight
    if schedule == "linear":
        return weight * min(1.0, step / (max_steps - 1)) if max_steps > 1 else weight
    raise PiilabError(f"--exit-loss-schedule must be constant or linear, not {schedule!r}")


class CompactSavedActivations:
    """Keeps float32 activations that autograd saves for backward as bf16 copies (half the memory).

    Compute stays float32; the backward pass multiplies with bf16-rounded activations, as bf16
    autocast would. Parameters and small tensors are kept as they are, and a tensor saved by
    several ops (one input feeding q, k and v) is stored once. Use as a context manager around a
    forward pass.
    """

    MIN_ELEMENTS = 1 << 14

    def __init__(self, model: torch.nn.Module):
        self.params = {p.untyped_storage().data_ptr() for p in model.parameters()}
        self.packed: dict[tuple, tuple[weakref.ref, torch.Tensor]] = {}

    def pack(self, tensor: torch.Tensor):
        if (tensor.dtype != torch.float32 or tensor.numel() < self.MIN_ELEMENTS or tensor.is_sparse
                or tensor.untyped_storage().data_ptr() in self.params):
            return tensor
        key = (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape),
               tuple(tensor.stride()), tensor._version)
        # A live weak reference proves the memory at that address still holds this tensor (a
        # freed tensor's address can be reused by the next one within the same forward).
        hit = self.packed.get(key)
        if hit is None or hit[0]() is None:
            hit = (weakref.ref(tensor), tensor.to(torch.bfloat16))
            self.packed[key] = hit
        return (hit[1],)

    @staticmethod
    def unpack(saved):
        return saved[0].to(torch.float32) if isinstance(saved, tuple) else saved

    def __enter__(self):
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self.pack, self.unpack)
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc):
        self.packed.clear()  # the graph holds the copies now
        return self._hooks.__exit__(*exc)


def _completion_forward(
    self, *args, piilab_loss: bool = False, labels=None, num_items_in_batch=None, exit_weight: float = 0.0,
    answer_index=None, **kwargs
):
    """Forward of a *ForCausalLM; with `piilab_loss=True`, the loss on labelled positions only
    (`answer_index`'s, else found from the labels on their device).

    With exit layers installed, the loss is `(L_N + w * sum_e L_e) / (1 + w * k)`: L_N the last
    layer's, L_e the logit lens's at each of the k exit layers on the same positions, all over
    the same denominator, w = `exit_weight` (0: the last layer's loss alone).
    """
    if not piilab_loss:
        if labels is not None:
            kwargs["labels"] = labels
        if num_items_in_batch is not None:
            kwargs["num_items_in_batch"] = num_items_in_batch
        return self._piilab_original_forward(*args, **kwargs)
    if args:
        raise TypeError("piilab_loss=True takes keyword arguments only")
    for unused in ("output_attentions", "output_hidden_states", "return_dict", "use_cache"):
        kwargs.pop(unused, None)
    # Under bf16 autocast too: the matmuls save bf16, but norms, residual sums and LoRA dropout
    # still save float32 tensors, and those dominate what is left.
    compact = self._piilab_compact_activations and torch.is_grad_enabled()
    exits = self._piilab_exit_layers
    with (CompactSavedActivations(self) if compact else contextlib.nullcontext(),
          block_outputs(self, exits) if exits else contextlib.nullcontext() as caught):
        hidden = backbone_hidden(self, share_prefix=self._piilab_share_prefix, use_cache=False, **kwargs)  # (B, T, H)
    at = labelled_positions(labels) if answer_index is None else answer_index  # (N,): b * T + t
    targets = labels.flatten()[at + 1]  # position t predicts token t+1
    logits = arch.unembed(self, hidden.flatten(0, 1)[at])  # (N, V), N = labelled positions
    loss_sum, correct = token_cross_entropy(logits, targets)
    num_tokens = (labels[:, 1:] != IGNORE_INDEX).sum()  # on the device, not read back here
    denominator = num_tokens.clamp(min=1) if num_items_in_batch is None else num_items_in_batch
    if not exits:
        return CompletionLossOutput(loss=loss_sum / denominator, num_tokens=num_tokens, num_correct=correct)
    batch = hidden.shape[0]
    exit_sums = []
    for layer in exits:
        states = join_pieces(caught[layer], batch).flatten(0, 1)[at]  # (N, H): block `layer`'s output
        exit_sums.append(token_cross_entropy(arch.logit_lens(self, states), targets)[0])
    objective = (loss_sum + exit_weight * sum(exit_sums)) / (1 + exit_weight * len(exits))
    return CompletionLossOutput(loss=objective / denominator, num_tokens=num_tokens, num_correct=correct,
                                layer_loss_sums=torch.stack([*exit_sums, loss_sum]).detach())


def install_completion_loss(model, share_prefix: bool = True, compact_activations: bool = False,
                            exit_layers: Sequence[int] = ()) -> None:
    """Patch a *ForCausalLM so `model(..., labels=..., piilab_loss=True)` returns the completion loss.

    Without `piilab_loss` the forward is the original one, so generation is unchanged. Idempotent;
    a second call replaces the settings. `exit_layers` (1..N-1) add logit-lens losses there.
    """
    model = arch.base_model(model)
    model._piilab_share_prefix = share_prefix
    model._piilab_compact_activations = compact_activations
    model._piilab_exit_layers = check_exit_layers(exit_layers, arch.num_layers(model)) if exit_layers else []
    if getattr(model, "_piilab_original_forward", None) is not None:
        return
    model._piilab_original_forward = model.forward
    model.forward = types.MethodType(_completion_forward, model)


class PiilabSFTTrainer(SFTTrainer):
    """SFTTrainer with piilab's completion-position loss and a count of real (non-pad) tokens.

    With `exit_layers`, training minimises the early-exit objective (see `_completion_forward`)
    with the weight `exit_loss_weight` scheduled by `exit_loss_schedule`; evaluation reports the
    last layer's loss as `eval_loss`, so runs with and without exits compare. Both log each
    layer's own loss (`exit_loss_L16`, ..., and the last layer's) as a mean over answer tokens.
    """

    def __init__(self, *args, share_prefix: bool = True, compact_activations: bool = False,
                 exit_layers: Sequence[int] = (), exit_loss_weight: float = 1.0,
                 exit_loss_schedule: str = "constant", **kwargs):
        super().__init__(*args, **kwargs)
        self.data_collator = AnswerIndexed(self.data_collator)
        install_completion_loss(self.model, share_prefix=share_prefix,
                                compact_activations=compact_activations, exit_layers=exit_layers)
        self.exit_layers = list(arch.base_model(self.model)._piilab_exit_layers)
        self.num_layers = arch.num_layers(self.model)
        self.exit_loss_weight = exit_loss_weight
        self.exit_loss_schedule = exit_loss_schedule
        scheduled_exit_weight(exit_loss_schedule, exit_loss_weight, 0, 1)  # an unknown schedule fails here
        self._real_tokens = 0  # all processes, the whole run (`train` restores it on resume)
        # Per micro-batch counts stay on the device until the next log: reading them at every
        # step (`.item()`, `.tolist()`) would make the host wait for the GPU each time.
        self._pending_counts: dict[str, list[torch.Tensor]] = {"train": [], "eval": []}
        self._pending_tokens: list[torch.Tensor] = []
        self._flop_parameters: int | None = None  # see floating_point_ops

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        mode = "train" if self.model.training else "eval"
        extra = {}
        if self.exit_layers:
            weight = 0.0 if mode == "eval" else scheduled_exit_weight(
                self.exit_loss_schedule, self.exit_loss_weight, self.state.global_step, self.state.max_steps)
            extra["exit_weight"] = weight
        outputs = model(**inputs, piilab_loss=True, num_items_in_batch=num_items_in_batch, **extra)
        loss = outputs.loss
        # Like TRL: `num_items_in_batch` counts every rank's tokens and DDP averages gradients.
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            loss = loss * self.accelerator.num_processes
        sums = [] if outputs.layer_loss_sums is None else [outputs.layer_loss_sums.float()]
        counts = torch.cat([torch.stack([outputs.num_tokens, outputs.num_correct]).float(), *sums]).detach()
        self._pending_counts[mode].append(counts)
        if mode == "train":
            self._pending_tokens.append(self._local_real_tokens(inputs))
        if return_outputs:
            return loss, outputs
        return loss

    @property
    def real_tokens(self) -> int:
        """Non-pad tokens trained on so far, all processes (call on every process: it gathers)."""
        self._flush_tokens()
        return self._real_tokens

    @real_tokens.setter
    def real_tokens(self, value: int) -> None:
        """A resumed run counts on from its checkpoint's tokens."""
        self._real_tokens = value

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Turn the pending device counts into this log's metrics (one wait for the device), then log."""
        mode = "train" if self.model.training else "eval"
        self._flush_counts(mode)
        if mode == "train" and self._pending_tokens:  # not on the end-of-training summary
            self._metrics[mode]["num_tokens"] = [self.real_tokens]
        super().log(logs, start_time)

    def _flush_counts(self, mode: str) -> None:
        """Token accuracy and per-layer losses of each pending micro-batch, summed over processes."""
        pending = self._pending_counts[mode]
        if not pending:
            return
        stacked = torch.stack(pending)  # (M, 2 + layers): micro-batches since the last log
        pending.clear()
        per_step = self.accelerator.gather(stacked).reshape(-1, *stacked.shape).sum(0).tolist()
        layers = [*self.exit_layers, self.num_layers] if stacked.shape[1] > 2 else []
        for total, correct, *layer_sums in per_step:
            self._metrics[mode]["mean_token_accuracy"].append(correct / total if total else 0.0)
            for layer, layer_sum in zip(layers, layer_sums, strict=True):
                self._metrics[mode][f"{LAYER_LOSS}{layer}"].append(layer_sum / total if total else 0.0)

    def _flush_tokens(self) -> None:
        if self._pending_tokens:
            local = torch.stack(self._pending_tokens).sum().reshape(1)
            self._pending_tokens.clear()
            self._real_tokens += int(self.accelerator.gather(local).sum())

    def floating_point_ops(self, inputs: dict[str, Any]) -> int:
        """transformers' estimate, 6 x input tokens x parameters without the embeddings, with the
        parameters counted once: transformers counts them at every micro-batch, by walking every
        module and parameter of the model (host time a GPU step waits for)."""
        name = getattr(self.model, "main_input_name", "input_ids")
        if name not in inputs or not hasattr(self.model, "num_parameters"):
            return 0
        if self._flop_parameters is None:
            self._flop_parameters = self.model.num_parameters(exclude_embeddings=True)
        return 6 * inputs[name].numel() * self._flop_parameters

    @staticmethod
    def _local_real_tokens(inputs: dict[str, Any]) -> torch.Tensor:
        """Non-pad tokens in this micro-batch, on its device (not read back here)."""
        if "attention_mask" in inputs:
            return inputs["attention_mask"].sum()
        # padding-free / packed: one row of real tokens, labels -100 only at boundaries
        return torch.tensor(inputs["input_ids"].numel(), device=inputs["input_ids"].device)


# ---------------------------------------------------------------- run log
