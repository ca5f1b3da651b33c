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
import csv
import logging
import math
import time
import types
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from transformers import ProgressCallback, TrainerCallback
from transformers.utils import ModelOutput
from trl import SFTTrainer

from piilab.errors import PiilabError
from piilab.io import atomic_write, read_json, write_json
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
    **kwargs
):
    """Forward of a *ForCausalLM; with `piilab_loss=True`, the loss on labelled positions only.

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
    targets = labels[:, 1:]  # position t predicts token t+1
    mask = targets != IGNORE_INDEX  # (B, T-1): the answer and its EOS
    logits = arch.unembed(self, hidden[:, :-1][mask])  # (N, V), N = labelled positions
    loss_sum, correct = token_cross_entropy(logits, targets[mask])
    num_tokens = mask.sum()
    denominator = num_tokens.clamp(min=1) if num_items_in_batch is None else num_items_in_batch
    if not exits:
        return CompletionLossOutput(loss=loss_sum / denominator, num_tokens=num_tokens, num_correct=correct)
    batch = hidden.shape[0]
    exit_sums = []
    for layer in exits:
        states = join_pieces(caught[layer], batch)[:, :-1][mask]  # (N, H): block `layer`'s output
        exit_sums.append(token_cross_entropy(arch.logit_lens(self, states), targets[mask])[0])
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
        install_completion_loss(self.model, share_prefix=share_prefix,
                                compact_activations=compact_activations, exit_layers=exit_layers)
        self.exit_layers = list(arch.base_model(self.model)._piilab_exit_layers)
        self.num_layers = arch.num_layers(self.model)
        self.exit_loss_weight = exit_loss_weight
        self.exit_loss_schedule = exit_loss_schedule
        scheduled_exit_weight(exit_loss_schedule, exit_loss_weight, 0, 1)  # an unknown schedule fails here
        self.real_tokens = 0  # all processes, the whole run (`train` restores it on resume)

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
        total, correct, *layer_sums = self.accelerator.gather_for_metrics(counts.unsqueeze(0)).sum(0).tolist()
        self._metrics[mode]["mean_token_accuracy"].append(correct / total if total else 0.0)
        layers = [*self.exit_layers, self.num_layers] if layer_sums else []
        for layer, layer_sum in zip(layers, layer_sums, strict=True):
            self._metrics[mode][f"{LAYER_LOSS}{layer}"].append(layer_sum / total if total else 0.0)
        if mode == "train":
            self.real_tokens += self._gathered_real_tokens(inputs)
            self._metrics[mode]["num_tokens"] = [self.real_tokens]
        if return_outputs:
            return loss, outputs
        return loss

    def _gathered_real_tokens(self, inputs: dict[str, Any]) -> int:
        """Non-pad tokens in this micro-batch, summed over processes."""
        if "attention_mask" in inputs:
            local = inputs["attention_mask"].sum()
        else:  # padding-free / packed: one row of real tokens, labels -100 only at boundaries
            local = torch.tensor(inputs["input_ids"].numel(), device=inputs["input_ids"].device)
        return int(self.accelerator.gather_for_metrics(local.reshape(1)).sum().item())


# ---------------------------------------------------------------- run log


def log_rows(log_history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per logged step from a Trainer's `log_history`, train and eval entries merged."""
    rows: dict[int, dict[str, Any]] = {}
    names = {"loss": "loss", "learning_rate": "lr", "eval_loss": "eval_loss", "grad_norm": "grad_norm",
             "mean_token_accuracy": "token_accuracy", "num_tokens": "tokens", "epoch": "epoch"}
    for entry in log_history:
        if "loss" not in entry and "eval_loss" not in entry:
            continue  # the end-of-training summary
        row = rows.setdefault(int(entry["step"]), {"step": int(entry["step"])})
        for key, column in names.items():
            if key in entry and entry[key] is not None:
                row[column] = entry[key]
        for key, value in entry.items():
            if key.removeprefix("eval_").startswith(LAYER_LOSS) and value is not None:
                row[key] = value
    return [rows[step] for step in sorted(rows)]


def layer_loss_columns(rows: list[dict[str, Any]]) -> list[str]:
    """The per-layer loss columns present in log rows: train ones by layer, then eval ones."""
    found = {key for row in rows for key in row if key.removeprefix("eval_").startswith(LAYER_LOSS)}
    return sorted(found, key=lambda k: (k.startswith("eval_"), int(k.rpartition("L")[2])))


def write_log_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    columns = [*LOG_COLUMNS, *layer_loss_columns(rows)]
    with atomic_write(path) as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _fmt(row.get(k)) for k in columns})


def _fmt(value: Any) -> Any:
    if isinstance(value, float):
        return f"{value:.6g}"
    return "" if value is None else value


def read_log_csv(path: Path) -> list[dict[str, float]]:
    """The rows of a train_log.csv, numbers parsed, empty cells left out."""
    with open(path, newline="", encoding="utf-8") as handle:
        return [{k: float(v) for k, v in row.items() if v != ""} for row in csv.DictReader(handle)]


def plot_loss(rows: list[dict[str, Any]], path: Path) -> None:
    """Training (and evaluation) loss against the step, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=120)
    for key, label, style in (("loss", "train", "-"), ("eval_loss", "eval", "o-")):
        points = [(r["step"], r[key]) for r in rows if key in r and math.isfinite(float(r[key]))]
        if points:
            ax.plot(*zip(*points), style, label=label, markersize=3)
    ax.set_xlabel("step")
    ax.set_ylabel("loss (answer tokens)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    with atomic_write(path, "wb") as handle:
        fig.savefig(handle, format="png")
    plt.close(fig)


PROGRESS_FILE = "piilab_progress.json"  # in each checkpoint: the run's time and tokens so far


def checkpoint_progress(checkpoint: Path | None) -> dict[str, float]:
    """Training seconds and real tokens of a run up to a checkpoint (zero for a fresh run).

    Checkpoints of an older piilab have no progress file: their tokens come from the logged
    history, their seconds are unknown (0).
    """
    if checkpoint is None:
        return {"train_seconds": 0.0, "real_tokens": 0}
    path = checkpoint / PROGRESS_FILE
    if path.is_file():
        saved = read_json(path)
        return {"train_seconds": float(saved["train_seconds"]), "real_tokens": int(saved["real_tokens"])}
    history = read_json(checkpoint / "trainer_state.json").get("log_history", [])
    return {"train_seconds": 0.0, "real_tokens": logged_tokens(history)}


def logged_tokens(history: list[dict[str, Any]]) -> int:
    """The cumulative real tokens of the last logged training step."""
    return int(max((entry["num_tokens"] for entry in history if "num_tokens" in entry), default=0))


class RunLogCallback(TrainerCallback):
    """Rewrites RUN_DIR/train_log.csv from the trainer's log history at every log, on rank 0.

    Rewriting (not appending) means a resumed run's log holds each step once: the history comes
    back from the checkpoint, so steps logged after it by the killed run are dropped.
    Also times the steps, for a steady tokens/s that leaves out the first (warm-up) step, and
    writes the run's seconds and tokens so far into each checkpoint, so a resumed run's figures
    continue from there instead of restarting at 0.
    """

    def __init__(self, path: Path):
        self.path = path
        self.step_times: list[tuple[int, float]] = []
        self.prior_seconds = 0.0  # training time of earlier sessions, up to the resumed checkpoint
        self.started: float | None = None

    def session_seconds(self) -> float:
        return time.perf_counter() - self.started if self.started is not None else 0.0

    def on_train_begin(self, args, state, control, **kwargs):
        self.started = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self.step_times.append((state.global_step, time.perf_counter()))

    def on_save(self, args, state, control, **kwargs):
        checkpoint = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if state.is_world_process_zero and checkpoint.is_dir():
            write_json(checkpoint / PROGRESS_FILE, {
                "train_seconds": round(self.prior_seconds + self.session_seconds(), 3),
                "real_tokens": logged_tokens(state.log_history)})

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero:
            write_log_csv(self.path, log_rows(state.log_history))


class QuietProgress(ProgressCallback):
    """The Trainer's progress bar, with the latest loss in the bar instead of a printed dict per log."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and self.training_bar is not None and logs:
            shown = {k: f"{logs[k]:.4g}" for k in ("loss", "eval_loss") if isinstance(logs.get(k), float)}
            if shown:
                self.training_bar.set_postfix(shown, refresh=False)
