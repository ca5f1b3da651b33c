"""Exit-layer generation: decode from any decoder layer, with a KV cache, in batches.

`layer = L` means: decoder blocks 1..L, then a lens (default: the final norm and the unembedding;
see piilab.layers.lens and design.md, "Exit layers"). For a batch of prompts and exit layers L1 > L2 > ...:

1. Prefill once. The prompts run through blocks 1..L1 and each exit layer keeps only its last
   position's hidden state. The cache of blocks 1..L does not depend on what runs above L, so one
   prefill serves every exit layer. A start that all prompts of the batch share (chat template,
   instruction) is computed once and copied.
2. Every (exit layer, prompt) pair becomes a row, highest exit layer first, so the rows that reach
   block l are always a prefix of the batch; block l's cache holds one copy of the prompt cache
   per exit layer that reaches it.
3. Each step is one forward pass of the model's own code over all live rows: every block runs on
   the prefix of rows that reaches it (a row leaves at its exit layer), the lens turns each row's
   exit state into logits in one shared unembedding, and a token is chosen per row.
4. A row that ends (EOS, a stop string) leaves the batch and every cache at once.

So each block and the unembedding run once per step for all exit layers, the prompt is
prefilled once, and nothing ever holds all layers' hidden states.
"""

from __future__ import annotations

import logging
import math
import os
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn
from tqdm.auto import tqdm

from piilab import runtime
from piilab.errors import PiilabError
from piilab.layers.constrain import Notes, CopyGuide
from piilab.layers.encoding import encode_prompts
from piilab.layers.lens import Lens
from piilab.layers.lenses import make_lens
from piilab.models import arch

log = logging.getLogger(__name__)

SHARED_PREFIX_MIN = 16  # a shared prompt start shorter than this is not worth a forward pass of its own


@dataclass(frozen=True)
class Decoding:
    """How each next token is chosen, and when a sequence ends."""

    max_new_tokens: int = 64
    """Stop after this many new tokens."""
    sample: bool = False
    """Sample from the distribution; False is greedy argmax (deterministic)."""
    top_k: int | None = None
    """Sample among the k most likely tokens only (None: all)."""
    temperature: float = 1.0
    """Divide logits by this before sampling."""
    eos_weight: float = 1.0
    """Multiply the probability of end-of-sequence tokens by this (greedy too); 1 leaves it."""
    seed: int = 0
    """Seeds one generator per (prompt, exit layer), so a sample never depends on batching."""
    stop: tuple[str, ...] = ()
    """End a sequence once its text contains one of these; the text is cut before it."""

    def __post_init__(self) -> None:
        problems = [
            (self.max_new_tokens >= 1, "max_new_tokens must be at least 1"),
            (self.top_k is None or self.top_k >= 1, "top_k must be at least 1"),
            (self.temperature > 0, "temperature must be positive"),
            (self.eos_weight > 0, "eos_weight must be positive"),
            (self.sample or (self.top_k is None and self.temperature == 1.0),
             "top_k and temperature apply to sampling only: set sample=True"),
            (all(self.stop), "stop strings must not be empty"),
        ]
        for ok, message in problems:
            if not ok:
                raise PiilabError(f"decoding: {message}")
        object.__setattr__(self, "stop", tuple(self.stop))

    @classmethod
    def original(cls, **overrides) -> "Decoding":
        """The original experiment's sampling: top_k 5, temperature 0.1, EOS weight 2.0."""
        return cls(**{"sample": True, "top_k": 5, "temperature": 0.1, "eos_weight": 2.0, **overrides})


@dataclass
class Generation:
    """What a run produced per exit layer (lists in prompt order), and where the time went."""

    layers: list[int]
    """Exit layers, ascending."""
    texts: dict[int, list[str]]
    """Decoded new text (special tokens skipped, cut before a stop string)."""
    token_ids: dict[int, list[list[int]]]
    """New token ids, including a final EOS token when the model produced one."""
    seconds: dict[int, float]
    """Wall time attributed to each exit layer: every block's time split evenly among the rows
    that ran through it (prefill and decode). Sums to `wall_seconds` less tokenising."""
    wall_seconds: float
    """Wall time of the whole call."""
    n_prompts: int = 0
    new_tokens: dict[int, int] = field(default_factory=dict)
    """New tokens produced per exit layer, over all prompts."""

    def seconds_per_sample(self) -> dict[int, float]:
        """Attributed seconds per prompt, per exit layer."""
        return {layer: s / max(self.n_prompts, 1) for layer, s in self.seconds.items()}


# ---------------------------------------------------------------- inputs


def check_layers(model: nn.Module, layers: Sequence[int] | None) -> list[int]:
    """Exit layers, deduplicated and ascending; each must lie in 1..N."""
    total = arch.num_layers(model)
    layers = sorted(set(layers)) if layers else [total]
    bad = [layer for layer in layers if not 1 <= layer <= total]
    if bad:
        raise PiilabError(f"exit layer {bad[0]} is out of range: the model has layers 1..{total}")
    return layers


def eos_token_ids(model: nn.Module, tokenizer) -> list[int]:
    """End-of-sequence ids: the model's generation config and the tokenizer's, together."""
    ids: list[int] = []
    config = getattr(arch.base_model(model), "generation_config", None)
    for value in (getattr(config, "eos_token_id", None), tokenizer.eos_token_id):
        for token in value if isinstance(value, (list, tuple)) else [value]:
            if token is not None and token not in ids:
                ids.append(int(token))
    return ids


def left_pad(batch: list[list[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask), each (B, T), padded on the left."""
    width = max(len(ids) for ids in batch)
    ids = torch.tensor([[pad_id] * (width - len(x)) + x for x in batch], device=device)
    mask = torch.tensor([[0] * (width - len(x)) + [1] * len(x) for x in batch], device=device)
    return ids, mask


def shared_prefix(batch: list[list[int]], least: int = SHARED_PREFIX_MIN) -> int:
    """Tokens every prompt of the batch starts with (0 below `least`); each keeps its last token."""
    if len(batch) < 2:
        return 0
    n = min(len(os.path.commonprefix(batch)), min(map(len, batch)) - 1)
    return n if n >= least else 0


def row_seed(seed: int, prompt_index: int, layer: int) -> int:
    """One seed per (prompt, exit layer): the same sample whatever the batch or its order."""
    return zlib.crc32(f"{seed}:{prompt_index}:{layer}".encode())


# ---------------------------------------------------------------- the layer stack


class _Plan:
    """For one forward pass: how many rows reach each block, and which rows exit there."""

    def __init__(self) -> None:
        self.rows = 0
        self.reach: dict[int, int] = {}
        self.exits: dict[int, slice] = {}
        self.kept: list[torch.Tensor] = []

    def prefill(self, batch: int, top: int, layers: list[int]) -> None:
        """Every row runs through blocks 1..top; each of `layers` keeps all of them."""
        self.rows, self.kept = batch, []
        self.reach = {block: batch for block in range(1, top + 1)}
        self.exits = {layer: slice(0, batch) for layer in layers}

    def decode(self, exits: list[int]) -> None:
        """Rows (exit layers, highest first) run through blocks 1..their exit layer."""
        self.rows, self.kept = len(exits), []
        self.reach = {block: sum(e >= block for e in exits) for block in range(1, exits[0] + 1)}
        self.exits = {}
        for block, n in self.reach.items():
            above = self.reach.get(block + 1, 0)
            if n > above:
                self.exits[block] = slice(above, n)

    def gathered(self) -> torch.Tensor:
        """Kept states in row order (highest exit layer first): (R, H)."""
        return torch.cat(self.kept[::-1])


def _rows(value, full: int, n: int):
    """`value` cut to its first n rows wherever it has a batch dimension of `full` rows.

    Relies on every tensor a decoder block receives with `full` leading rows being per row
    (hidden states, masks, positions, rotary tables): true of every architecture in models/arch.py,
    each tested against `generate`. Only decode steps cut rows, and then full > 1 = sequence length.
    """
    if isinstance(value, torch.Tensor):
        return value[:n] if value.ndim and value.shape[0] == full else value
    if isinstance(value, (tuple, list)):
        return type(value)(_rows(v, full, n) for v in value)
    if isinstance(value, dict):
        return {k: _rows(v, full, n) for k, v in value.items()}
    return value


class _Block(nn.Module):
    """A decoder block that runs on the rows reaching it and keeps the rows exiting at it."""

    def __init__(self, index: int, block: nn.Module, plan: _Plan) -> None:
        super().__init__()
        self.index, self.block, self.plan = index, block, plan

    def forward(self, hidden, *args, **kwargs):
        n, full = self.plan.reach[self.index], self.plan.rows
        if n < full:  # masks, positions and rotary tables arrive for the whole batch
            hidden, args, kwargs = hidden[:n], _rows(args, full, n), _rows(kwargs, full, n)
        out = self.block(hidden, *args, **kwargs)
        exiting = self.plan.exits.get(self.index)
        if exiting is not None:
            state = out[0] if isinstance(out, tuple) else out
            self.plan.kept.append(state[exiting, -1])
        return out


def _shrink_cache(cache, keep: torch.Tensor, kept: list[int], exits: list[int]) -> None:
    """Keep rows `keep` (ascending, on the device; `kept` the same as a list) in every block's
    cache; block l holds the rows whose exit layer is >= l, so its rows to keep are a prefix of
    `keep` and one index tensor serves every block (one copy to the device, not one per block)."""
    for block, layer_cache in enumerate(cache.layers[: exits[0]], 1):
        n = sum(e >= block for e in exits)
        layer_cache.batch_select_indices(keep[: sum(k < n for k in kept)])


def _shares(exits: list[int]) -> list[float]:
    """Each row's share of one forward pass: every block's cost split evenly among its rows."""
    top = exits[0]
    reach = [sum(e >= block for e in exits) for block in range(1, top + 1)]
    return [sum(1.0 / reach[b] for b in range(e)) / top for e in exits]


# ---------------------------------------------------------------- choosing tokens


def choose(logits: torch.Tensor, decoding: Decoding, eos: list[int],
           generators: list[torch.Generator] | None) -> torch.Tensor:
    """Next token per row from logits (R, V): greedy, or sampled with one generator per row."""
    scores = logits.float()
    if decoding.sample:
        scores = scores / decoding.temperature
    if decoding.eos_weight != 1.0 and eos:
        scores[:, eos] += math.log(decoding.eos_weight)  # p(EOS) * w, before renormalising
    if not decoding.sample:
        return scores.argmax(-1)  # (R,)
    if decoding.top_k:
        scores, candidates = scores.topk(min(decoding.top_k, scores.shape[-1]), dim=-1)  # (R, k)
    probs = torch.softmax(scores, dim=-1).cpu()  # (R, k or V)
    picks = torch.cat([torch.multinomial(p, 1, generator=g) for p, g in zip(probs, generators)])
    picks = picks.to(logits.device)  # (R,)
    return candidates.gather(1, picks[:, None])[:, 0] if decoding.top_k else picks


def cut_at_stop(text: str, stop: tuple[str, ...]) -> tuple[str, bool]:
    """`text` up to the first stop string in it, and whether there was one."""
    cuts = [text.find(s) for s in stop if s in text]
    return (text[: min(cuts)], True) if cuts else (text, False)


# ---------------------------------------------------------------- one batch


@dataclass
class _Run:
    """What every batch of one call shares."""

    model: nn.Module
    tokenizer: object
    lens: Lens
    layers: list[int]  # descending: row order
    decoding: Decoding
    eos: list[int]
    pad_id: int
    device: torch.device
    plan: _Plan
    blocks: list[_Block]
    guide: CopyGuide | None = None  # copy-constrained answers (layers/constrain.py), if asked
    numbers: Sequence[int] = ()  # each prompt's number in its seed (generate's seed_numbers)

    def forward(self, top: int, **inputs) -> None:
        """The model's own forward over blocks 1..top, as planned (states land in plan.kept)."""
        with arch.truncated(self.model, top, wrap=lambda i, block: self.blocks[i - 1]):
            arch.backbone(self.model)(**inputs, use_cache=True)

    def logits(self, hidden: torch.Tensor, exits: list[int]) -> torch.Tensor:
        """Each row's exit state through the lens: (R, H) -> (R, V), one shared head."""
        parts, start = [], 0
        for layer in sorted(set(exits), reverse=True):
            n = exits.count(layer)
            parts.append(self.lens.translate(layer, hidden[start:start + n]))
            start += n
        return self.lens.head(torch.cat(parts))


def _decode_batch(run: _Run, prompt_ids: list[list[int]], indices: list[int]):
    """Decode one batch of prompts from every exit layer: tokens and seconds per row.

    Rows are (exit layer, prompt) pairs, highest exit layer first.
    """
    from piilab.layers.cache import roomy_cache

    d, plan, dev = run.decoding, run.plan, run.device
    B, G = len(prompt_ids), len(run.layers)
    exits = [layer for layer in run.layers for _ in range(B)]  # (R,) exit layer per row
    slots = list(range(B * G))  # live row -> output slot
    tokens: list[list[int]] = [[] for _ in slots]
    seconds = [0.0] * len(slots)
    generators = [torch.Generator().manual_seed(row_seed(d.seed, run.numbers[indices[s % B]], exits[s]))
                  for s in slots] if d.sample else None
    top, cache = run.layers[0], roomy_cache(arch.base_model(run.model).config)
    shared = shared_prefix(prompt_ids)
    guard = run.guide.rows([indices[s % B] for s in slots]) if run.guide else None

    start = time.perf_counter()
    if shared:
        # the prompts' common start (template, instruction) once, then one copy per prompt
        plan.prefill(1, top, [])
        run.forward(top, input_ids=torch.tensor([prompt_ids[0][:shared]], device=dev),
                    position_ids=torch.arange(shared, device=dev)[None], cache=cache)
        for layer_cache in cache.layers[:top]:
            layer_cache.batch_select_indices(torch.zeros(B, dtype=torch.long, device=dev))
    ids, mask = left_pad([x[shared:] for x in prompt_ids], run.pad_id, dev)  # (B, T)
    # padding sits between the shared start and the rest: the mask hides it all the same
    mask = torch.cat([mask.new_ones(B, shared), mask], dim=-1)  # (B, shared + T)
    pos = (mask.cumsum(-1) - 1).clamp(min=0)[:, shared:]  # (B, T) positions, as generate counts
    padded = not bool(mask.all())  # without padding, no mask at all (as generate does)
    # prefill: prompts through blocks 1..top once; keep each exit layer's last position
    plan.prefill(B, top, run.layers)
    run.forward(top, input_ids=ids, attention_mask=mask if padded else None, position_ids=pos,
                cache=cache)
    hidden = plan.gathered()  # (R, H)
    # block l's cache: one copy of the prompts' cache per exit layer that reaches it
    for block, layer_cache in enumerate(cache.layers[:top], 1):
        copies = sum(layer >= block for layer in run.layers)
        layer_cache.batch_select_indices(torch.arange(B, device=dev).repeat(copies))
    mask, pos = mask.repeat(G, 1), pos[:, -1:].repeat(G, 1)  # (R, T), (R, 1)

    shares = _shares(exits)  # the rows' shares of a step, and its plan: until rows leave
    plan.decode(exits)
    for step in range(d.max_new_tokens):
        # lens: each row's exit state -> logits, then one token per row
        logits = run.logits(hidden, exits)  # (R, V)
        if guard:  # only tokens that keep each answer a copy of its text
            logits = guard.mask(logits, slots)
        next_ids = choose(logits, d, run.eos, generators)  # (R,)
        if guard:
            guard.advance(slots, next_ids.tolist())
        done = []
        for slot, token in zip(slots, next_ids.tolist()):
            tokens[slot].append(token)
            ended = token in run.eos
            if d.stop and not ended:
                ended = cut_at_stop(run.tokenizer.decode(tokens[slot], skip_special_tokens=True),
                                     d.stop)[1]
            done.append(ended)
        # time so far goes to the rows in proportion to the blocks they ran through
        now = time.perf_counter()
        for slot, share in zip(slots, shares):
            seconds[slot] += (now - start) * share
        start = now
        if step == d.max_new_tokens - 1 or all(done):
            break
        # finished rows leave the batch and every block's cache
        keep = [i for i, ended in enumerate(done) if not ended]
        if len(keep) < len(slots):
            index = torch.tensor(keep, device=dev)
            _shrink_cache(cache, index, keep, exits)
            mask, pos, next_ids = mask[index], pos[index], next_ids[index]
            exits, slots = [exits[i] for i in keep], [slots[i] for i in keep]
            generators = [generators[i] for i in keep] if generators else None
            shares = _shares(exits)
            plan.decode(exits)
        # one step: each live row through blocks 1..its exit layer, on the cache
        mask = torch.cat([mask, mask.new_ones(len(slots), 1)], dim=-1)  # (R, T+1)
        pos = pos + 1  # (R, 1)
        plan.kept = []
        run.forward(exits[0], input_ids=next_ids[:, None], attention_mask=mask if padded else None,
                    position_ids=pos, cache=cache)
        hidden = plan.gathered()  # (R, H)
    return tokens, seconds


# ---------------------------------------------------------------- the API


def prepare_prompts(model: nn.Module, tokenizer, prompts: Sequence[str], decoding: Decoding,
                    add_special_tokens: bool) -> list[list[int]]:
    """Every decoder's first step: the prompts' token ids, checked against the context window."""
    encoded = encode_prompts(tokenizer, prompts, add_special_tokens=add_special_tokens,
                             context_window=arch.context_window(model),
                             max_new_tokens=decoding.max_new_tokens)
    if model.training:
        log.warning("the model is in training mode (dropout on); call model.eval() for decoding")
    return encoded


@arch.one_at_a_time
def generate(
    model: nn.Module,
    tokenizer,
    prompts: Sequence[str | list[int]],
    layers: Sequence[int] | None = None,
    *,
    lens: str | Lens = "norm", decoding: Decoding | None = None,
    batch_size: int = 8,
    add_special_tokens: bool = True,
    progress: bool = True,
    return_details: bool = False,
    answers: Sequence[tuple | None] | None = None, notes: Notes | None = None,
    seed_numbers: Sequence[int] | None = None,
) -> dict[int, list[str]] | Generation:
    """Decode every prompt from every exit layer: {layer: [text per prompt]}.

    Prompts (texts, or lists of token ids) are decoded as given (plus the tokenizer's own special
    tokens when `add_special_tokens`); `layers` defaults to the last (the ordinary model);
    `return_details` returns a `Generation` with token ids and per-layer timings. `answers`, per
    prompt a rule of layers/constrain.py or None (free), copy-constrains PII answers; `notes`
    collects what greedy decoding saw besides them (constrain.Notes). A sample is seeded by the
    prompt's number, its place in `prompts` unless `seed_numbers` gives one per prompt: a caller
    that decodes its prompts in parts passes their places in the whole, so that a prompt's sample
    does not depend on how they were split (rounds, batches, a resumed run).
    """
    wall = time.perf_counter()
    decoding = decoding or Decoding()
    if batch_size < 1:
        raise PiilabError("batch size must be at least 1")
    layers = check_layers(model, layers)
    encoded = prepare_prompts(model, tokenizer, prompts, decoding, add_special_tokens)
    eos = eos_token_ids(model, tokenizer)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (eos or [0])[0]
    device = next(model.parameters()).device
    plan = _Plan()
    if answers is not None and len(answers) != len(encoded):
        raise PiilabError(f"{len(answers)} answer constraints for {len(encoded)} prompts")
    guide = CopyGuide.for_answers(tokenizer, answers, decoding, eos, notes)
    numbers = list(range(len(encoded)) if seed_numbers is None else seed_numbers)
    if len(numbers) != len(encoded):
        raise PiilabError(f"{len(numbers)} seed numbers for {len(encoded)} prompts")
    run = _Run(model, tokenizer, make_lens(model, lens), sorted(layers, reverse=True), decoding,
               eos, pad_id, device, plan,
               [_Block(i, block, plan) for i, block in enumerate(arch.decoder_layers(model), 1)],
               guide, numbers)
    log.info("decoding %d prompts from layers %s (lens %s, %s, batches of %d)", len(encoded),
             ",".join(map(str, layers)), run.lens.name, "sampling" if decoding.sample else "greedy",
             batch_size)

    token_ids = {layer: [None] * len(encoded) for layer in layers}
    seconds = dict.fromkeys(layers, 0.0)
    # similar lengths together: less padding to compute
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
    with torch.inference_mode(), tqdm(total=len(encoded), unit="prompt", desc="generate",
                                      disable=None if progress else True) as bar:
        for first in range(0, len(order), batch_size):
            indices = order[first:first + batch_size]
            tokens, spent = _decode_batch(run, [encoded[i] for i in indices], indices)
            for slot, (row_tokens, row_seconds) in enumerate(zip(tokens, spent)):
                layer, index = run.layers[slot // len(indices)], indices[slot % len(indices)]
                token_ids[layer][index] = row_tokens
                seconds[layer] += row_seconds
            bar.update(len(indices))
            runtime.look_again()

    texts = {layer: [new_text(tokenizer, ids, eos, decoding.stop) for ids in token_ids[layer]]
             for layer in layers}
    result = Generation(layers, texts, token_ids, seconds, time.perf_counter() - wall, len(encoded),
                        {layer: sum(map(len, token_ids[layer])) for layer in layers})
    log.info("decoded in %.1f s: %s", result.wall_seconds, ", ".join(
        f"layer {layer} {s:.2f} s/prompt" for layer, s in result.seconds_per_sample().items()))
    if guide:
        log.info(guide.summary())
    return result if return_details else texts


def new_text(tokenizer, ids: list[int], eos: list[int], stop: tuple[str, ...]) -> str:
    """The text of new token ids: a final EOS dropped, special tokens skipped, cut at a stop string."""
    body = ids[:-1] if ids and ids[-1] in eos else ids
    return cut_at_stop(tokenizer.decode(body, skip_special_tokens=True), stop)[0]
