"""Training a tuned lens (`piilab lens train`): translators fitted to the frozen model's own output.

The logit lens reads layer L as `unembed(final_norm(h_L))`. Early layers speak a different
"basis" from the last one, so that reading is poor (high KL to the model's own output). A tuned
lens (Belrose et al. 2023; AlignmentResearch/tuned-lens) learns, per layer, `h + A h + b` with
A and b zero at the start, so an untrained lens *is* the logit lens, and trains it so that
`unembed(final_norm(h_L + A_L h_L + b_L))` matches the final layer's next-token distribution:
loss = KL(final || lens), the final distribution held fixed. The model itself never changes.

Training runs in two phases, because the model is frozen:

1. `collect_states`: one forward pass per batch of records (`output_hidden_states=True`) keeps the
   hidden states of the chosen positions at every trained layer, plus the final normed state
   (the target is recomputed from it, so no (tokens, vocab) tensor is ever stored).
2. `fit`: Adam over random token batches of those states. Each layer's loss is backpropagated on
   its own, so at most one (tokens, vocab) logits tensor is alive at a time.

A lens folder holds `tuned_lens.safetensors` (keys `layer.<L>.weight` / `layer.<L>.bias`) and
`lens_config.json` (the model, shapes, training settings and the held-out KL per layer of the
logit lens and the tuned lens). `--lens tuned:LENS_DIR` loads it through `load_tuned_lens`.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from piilab.errors import PiilabError
from piilab.io import output_folder
from piilab.models import arch

log = logging.getLogger(__name__)

POSITIONS = ("answer", "all")

from piilab.layers.tuned_lens import FORMAT, Translators, fingerprint, head, save_lens


@dataclass
class LensTrainConfig:
    """Settings of `piilab lens train`; written into lens_config.json."""

    model: str
    """Model spec (embedded name, folder, hub id) whose layers the lens reads."""
    data: str
    """Dataset folder from `piilab data build` (train.jsonl; test.jsonl for the held-out KL)."""
    out: str
    """Lens folder to write."""
    adapter: str | None = None
    """PEFT adapter (training run folder) applied to the model, as in eval."""
    layers: list[int] | None = None
    """Exit layers to give a translator (default: every layer below the last)."""
    steps: int = 250
    """Optimisation steps."""
    lr: float = 1e-3
    """Adam learning rate (peak; linear warm-up, then linear decay to zero)."""
    warmup: float = 0.1
    """Share of the steps spent warming the learning rate up."""
    weight_decay: float = 0.0
    """Decoupled weight decay on A and b, which pulls each translator towards the identity."""
    batch_tokens: int = 512
    """Token positions per optimisation step."""
    batch_size: int = 8
    """Records per forward pass while collecting hidden states."""
    max_length: int = 1024
    """Records longer than this many tokens (prompt + completion) are skipped."""
    max_tokens: int = 16384
    """Collect at most this many training positions (memory: positions x layers x hidden x 4 B)."""
    positions: str = "answer"
    """'answer': positions predicting the completion (what decoding reads); 'all': every one."""
    eval_records: int = 64
    """Held-out records for the KL report (test.jsonl, else carved out of train.jsonl)."""
    seed: int = 0
    """Seeds record order, token batches and the held-out carve-out."""
    device: str = "auto"
    """Where to run (piilab.runtime)."""
    dtype: str = "auto"
    """Model weights dtype (translators always train in float32)."""
    trust_remote_code: bool = False
    """Allow a model folder's own Python code to run."""

    def __post_init__(self) -> None:
        problems = [
            (self.steps >= 1, "--steps must be at least 1"),
            # inf passes `> 0` and trains the translators to nan
            (math.isfinite(self.lr) and self.lr > 0, "--lr must be a positive finite number"),
            (0 <= self.warmup < 1, "--warmup must be in [0, 1)"),
            (math.isfinite(self.weight_decay) and self.weight_decay >= 0,
             "--weight-decay must be a finite number, not negative"),
            (self.batch_tokens >= 1, "--batch-tokens must be at least 1"),
            (self.batch_size >= 1, "--batch-size must be at least 1"),
            (self.max_length >= 2, "--max-length must be at least 2"),
            (self.max_tokens >= 1, "--max-tokens must be at least 1"),
            (self.positions in POSITIONS, f"--positions must be one of {', '.join(POSITIONS)}"),
            (self.eval_records >= 1, "--eval-records must be at least 1"),
        ]
        for ok, message in problems:
            if not ok:
                raise PiilabError(f"lens train: {message}")


# ---------------------------------------------------------------- the translators


def kl_to_final(target_logp: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """KL(final || lens) per row in nats: target log-probs (R, V), lens logits (R, V) -> (R,)."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    return (target_logp.exp() * (target_logp - logp)).sum(-1)


# ---------------------------------------------------------------- records -> positions


@dataclass(frozen=True)
class Example:
    """One token sequence and the positions whose next-token distributions the lens learns."""

    ids: list[int]
    start: int
    """Positions start..len(ids)-2 count (each predicts the token after it)."""


def encode(record: dict, tokenizer, fmt, positions: str = "answer") -> Example:
    """A record as the model reads it: the rendered prompt, then the completion and EOS."""
    prompt = tokenizer(fmt.render(tokenizer, record["prompt"]),
                       add_special_tokens=fmt.add_special_tokens)["input_ids"]
    answer = tokenizer(record["completion"], add_special_tokens=False)["input_ids"]
    if tokenizer.eos_token_id is not None:
        answer = [*answer, tokenizer.eos_token_id]
    start = len(prompt) - 1 if positions == "answer" else 0
    return Example([*prompt, *answer], max(start, 0))


def encode_all(records: Sequence[dict], tokenizer, fmt, *, positions: str,
               max_length: int) -> list[Example]:
    """Encode records, skipping (and logging) those too long or without a prompt or completion."""
    examples, long_, empty = [], 0, 0
    for record in records:
        if not record.get("prompt") or not record.get("completion"):
            empty += 1
            continue
        example = encode(record, tokenizer, fmt, positions)
        if len(example.ids) > max_length:
            long_ += 1
            continue
        examples.append(example)
    if long_ or empty:
        log.info("skipped %d records longer than %d tokens and %d without prompt or completion",
                 long_, max_length, empty)
    return examples


def _padded(batch: Sequence[Example], pad_id: int, device) -> tuple[torch.Tensor, ...]:
    """Right-padded (input_ids, attention_mask, chosen-position mask), each (B, T)."""
    width = max(len(e.ids) for e in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    chosen = torch.zeros((len(batch), width), dtype=torch.bool)
    for row, example in enumerate(batch):
        n = len(example.ids)
        ids[row, :n] = torch.tensor(example.ids)
        mask[row, :n] = 1
        chosen[row, example.start:n - 1] = True
    return ids.to(device), mask.to(device), chosen.to(device)


# ---------------------------------------------------------------- phase 1: hidden states


@dataclass
class States:
    """Hidden states at chosen positions: per exit layer (R, H), and the final normed one (R, H)."""

    hidden: dict[int, torch.Tensor]
    final: torch.Tensor

    @property
    def rows(self) -> int:
        return self.final.shape[0]


@torch.no_grad()
def collect_states(model: nn.Module, examples: Sequence[Example], layers: Sequence[int], *,
                   pad_id: int, batch_size: int = 8, progress: bool = True) -> States:
    """Run the frozen model over the examples and keep the chosen positions' states (float32, CPU).

    Hidden state L is the output of decoder block L (`hidden_states[L]`, as the layer engine exits);
    the final state is the backbone's normed last state, from which the model's logits are one
    unembedding away.
    """
    from tqdm.auto import tqdm

    device = next(model.parameters()).device
    backbone = arch.backbone(model)
    hidden: dict[int, list[torch.Tensor]] = {layer: [] for layer in layers}
    final: list[torch.Tensor] = []
    order = sorted(range(len(examples)), key=lambda i: len(examples[i].ids))  # less padding
    with tqdm(total=len(order), unit="record", desc="hidden states",
              disable=None if progress else True) as bar:
        for first in range(0, len(order), batch_size):
            batch = [examples[i] for i in order[first:first + batch_size]]
            ids, mask, chosen = _padded(batch, pad_id, device)  # (B, T)
            out = backbone(input_ids=ids, attention_mask=mask, output_hidden_states=True)
            for layer in layers:
                hidden[layer].append(out.hidden_states[layer][chosen].float().cpu())  # (r, H)
            final.append(out.last_hidden_state[chosen].float().cpu())  # (r, H)
            bar.update(len(batch))
    if not final:
        raise PiilabError("no records to collect hidden states from")
    return States({layer: torch.cat(parts) for layer, parts in hidden.items()}, torch.cat(final))


def take_positions(examples: Sequence[Example], max_tokens: int) -> list[Example]:
    """The leading examples (in their given, shuffled order) holding up to max_tokens positions."""
    taken, total = [], 0
    for example in examples:
        if taken and total + len(example.ids) - 1 - example.start > max_tokens:
            break
        taken.append(example)
        total += len(example.ids) - 1 - example.start
    return taken


# ---------------------------------------------------------------- phase 2: fitting and scoring


def _row_batches(rows: int, size: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
    """Random row indices of `size`, epoch after epoch, each epoch a fresh permutation."""
    while True:
        perm = torch.randperm(rows, generator=generator)
        for first in range(0, rows - size + 1 if rows >= size else 1, size):
            yield perm[first:first + size]


def _lr_factor(step: int, steps: int, warmup: float) -> float:
    """Linear warm-up over the first `warmup` share of steps, then linear decay to zero."""
    warm = max(1, math.ceil(steps * warmup))
    if step < warm:
        return (step + 1) / warm
    return max(0.0, (steps - step) / max(1, steps - warm))


def fit(model: nn.Module, translators: Translators, states: States, *, steps: int = 250,
        lr: float = 1e-3, warmup: float = 0.1, weight_decay: float = 0.0,
        batch_tokens: int = 512, seed: int = 0, progress: bool = True) -> list[float]:
    """Train the translators to match the final distribution; returns the mean KL per step.

    The model is never updated: its parameters are excluded from the optimiser and their
    gradients are turned off for the duration.
    """
    from tqdm.auto import tqdm

    device = next(model.parameters()).device
    translators.to(device).train()
    optimizer = torch.optim.AdamW(translators.parameters(), lr=lr, weight_decay=weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: _lr_factor(step, steps, warmup))
    batches = _row_batches(states.rows, batch_tokens, torch.Generator().manual_seed(seed))
    frozen = [p for p in model.parameters() if p.requires_grad]
    for p in frozen:
        p.requires_grad_(False)
    history: list[float] = []
    try:
        for step in tqdm(range(steps), desc="tuned lens", unit="step",
                         disable=None if progress else True):
            rows = next(batches)
            with torch.no_grad():
                target = torch.log_softmax(head(model, states.final[rows].to(device)), -1)  # (R, V)
            total = 0.0
            for layer in translators.layers:
                # one layer at a time: only one (R, V) logits tensor and its graph alive
                logits = head(model, translators(layer, states.hidden[layer][rows].to(device)))
                loss = kl_to_final(target, logits).mean() / len(translators.layers)
                loss.backward()
                total += float(loss.detach())
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            schedule.step()
            history.append(total)
            if step % max(1, steps // 10) == 0 or step == steps - 1:
                log.debug("step %d: mean KL %.4f", step, total)
    finally:
        for p in frozen:
            p.requires_grad_(True)
        translators.eval()
    return history


@torch.no_grad()
def layer_kl(model: nn.Module, states: States, translators: Translators | None = None,
             chunk: int = 1024) -> dict[int, float]:
    """Mean KL(final || lens) per exit layer over all rows: the logit lens, or the tuned lens."""
    device = next(model.parameters()).device
    sums = dict.fromkeys(states.hidden, 0.0)
    for first in range(0, states.rows, chunk):
        rows = slice(first, first + chunk)
        target = torch.log_softmax(head(model, states.final[rows].to(device)), -1)  # (r, V)
        for layer, hidden in states.hidden.items():
            h = hidden[rows].to(device)
            if translators is not None:
                h = translators(layer, h)
            sums[layer] += float(kl_to_final(target, head(model, h)).sum())
    return {layer: total / states.rows for layer, total in sums.items()}


def compare_kl(model: nn.Module, states: States,
               translators: Translators) -> dict[str, dict[int, float]]:
    """Held-out KL per layer for the logit lens and the tuned lens, side by side."""
    return {"logit_lens": layer_kl(model, states),
            "tuned_lens": layer_kl(model, states, translators)}


def _split_records(config: LensTrainConfig) -> tuple[list[dict], list[dict], str]:
    """(training records, held-out records, where the held-out ones came from)."""
    from piilab.data.dataset import read_records

    records = read_records(config.data, "train")
    random.Random(config.seed).shuffle(records)
    test = Path(config.data) / "test.jsonl"
    if test.is_file():
        return records, read_records(config.data, "test")[:config.eval_records], "test.jsonl"
    n = min(config.eval_records, len(records) // 2)
    if n < 1:
        raise PiilabError(f"{config.data}: too few records to hold some out for the KL report")
    return records[n:], records[:n], f"{n} records held out of the training file"


def choose_layers(model: nn.Module, layers: Sequence[int] | None) -> list[int]:
    """Layers that get a translator: 1..N-1 by default; N needs none (the model itself)."""
    total = arch.num_layers(model)
    if not layers:
        return list(range(1, total))
    bad = [layer for layer in layers if not 1 <= layer <= total]
    if bad:
        raise PiilabError(f"layer {bad[0]} is out of range: the model has layers 1..{total}")
    chosen = sorted(set(layers) - {total})
    if not chosen:
        raise PiilabError(f"layer {total} is the model itself and needs no translator: "
                          "choose earlier --layers")
    return chosen


def train_lens(config: LensTrainConfig, progress: bool = True) -> dict[str, Any]:
    """Train a tuned lens for a model on a dataset and write the lens folder; returns its config."""
    # --out is tried before the data is read and the model loads, not after training
    with output_folder(config.out, "--out") as out:
        return _train_lens(config, out, progress)


def _train_lens(config: LensTrainConfig, out: Path, progress: bool) -> dict[str, Any]:
    """`train_lens` once --out is checked."""
    from piilab import __version__, models
    from piilab.models.prompts import format_for

    started = time.time()
    train_records, heldout_records, heldout_from = _split_records(config)
    model, tokenizer = models.load_model(config.model, config.adapter, device=config.device,
                                         dtype=config.dtype,
                                         trust_remote_code=config.trust_remote_code)
    adapter = config.adapter or models.resolve(config.model).adapter
    fmt = format_for(tokenizer, models.trained_folder(config.model, adapter))
    layers = choose_layers(model, config.layers)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    encoded = {name: encode_all(records, tokenizer, fmt, positions=config.positions,
                                max_length=config.max_length)
               for name, records in (("train", train_records), ("heldout", heldout_records))}
    for name, examples in encoded.items():
        if not examples:
            raise PiilabError(f"{config.data}: no {name} records fit "
                              f"--max-length {config.max_length}")
    train_examples = take_positions(encoded["train"], config.max_tokens)
    if len(train_examples) < len(encoded["train"]):
        log.info("using %d of %d training records (--max-tokens %d)", len(train_examples),
                 len(encoded["train"]), config.max_tokens)
    train_states = collect_states(model, train_examples, layers, pad_id=pad_id,
                                  batch_size=config.batch_size, progress=progress)
    heldout_states = collect_states(model, encoded["heldout"], layers, pad_id=pad_id,
                                    batch_size=config.batch_size, progress=progress)
    log.info("training %d translators on %d positions (%s); held out: %d positions from %s",
             len(layers), train_states.rows, config.positions, heldout_states.rows, heldout_from)
    translators = Translators(arch.base_model(model).config.hidden_size, layers)
    history = fit(model, translators, train_states, steps=config.steps, lr=config.lr,
                  warmup=config.warmup, weight_decay=config.weight_decay,
                  batch_tokens=config.batch_tokens, seed=config.seed, progress=progress)
    kl = compare_kl(model, heldout_states, translators)
    lens_config = {
        "format": FORMAT,
        "piilab_version": __version__,
        "model": config.model,
        "adapter": adapter,
        "model_type": arch.model_type(model),
        "num_layers": arch.num_layers(model),
        "hidden_size": translators.hidden_size,
        "layers": layers,
        "parameterisation": "h + A h + b per layer, A and b initialised to zero; "
                            "logits = unembed(final_norm(.)); identity at the last layer",
        "fingerprint": fingerprint(model),
        "training": asdict(config),
        "train_positions": train_states.rows,
        "heldout": {"source": heldout_from, "records": len(encoded["heldout"]),
                    "positions": heldout_states.rows},
        "loss": {"first": history[0], "last": history[-1]},
        "kl": {name: {str(layer): round(value, 6) for layer, value in per_layer.items()}
               for name, per_layer in kl.items()},
        "seconds": round(time.time() - started, 1),
    }
    save_lens(out, translators, lens_config)
    log.info("wrote %s: held-out KL (logit lens -> tuned lens) %s", out, ", ".join(
        f"L{layer} {kl['logit_lens'][layer]:.2f}->{kl['tuned_lens'][layer]:.2f}"
        for layer in layers))
    return lens_config
