"""Self-speculative decoding: draft with an early exit, verify with the whole model (LayerSkip).

The output is exactly the full model's greedy decoding; only the time changes. One prompt at a
time (batch 1). Each round, with the last committed token x at position p and every block's KV
cache covering positions < p:

1. Draft. Blocks 1..E run on x, then on each drafted token, one token at a time; the lens at E
   (default: final norm + unembedding) drafts d1..dk greedily. Blocks 1..E's caches now cover
   x, d1..dk, and block E's outputs for those k + 1 positions are kept.
2. Verify. One forward pass of the model's own code over the k + 1 positions. Blocks 1..E are
   not run again: their caches are cut back to p and each re-appends the keys and values the
   draft computed, and block E hands over its kept outputs. Blocks E+1..N run normally; the
   full model's predictions f1..f(k+1) follow from the final norm and unembedding.
3. Accept the longest prefix of drafts equal to the full model's predictions (a of them), commit
   d1..da and then f(a+1) (a correction, or a bonus token when all drafts held), and cut every
   block's cache back to the committed positions.

Every committed token is the full model's greedy choice given the tokens before it, and blocks
1..E's keys and values for a position do not depend on which pass computed them, so the result
is full-depth greedy decoding. The draft's work on blocks 1..E is never repeated.

Only the draft's token choices may be approximate, since verification checks each one. So on
hardware with native bf16 the draft unembeds with a bf16 copy of the output head (a quarter of
the float32 head's time on a CPU with avx512_bf16); blocks 1..E stay exact, because verification
reuses their keys and values.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from piilab.errors import PiilabError
from piilab.layers.decode import (
    Decoding,
    choose,
    cut_at_stop,
    eos_token_ids,
    new_text,
    prepare_prompts,
)
from piilab.layers.lens import Lens
from piilab.layers.lenses import make_lens
from piilab.models import arch

log = logging.getLogger(__name__)


@dataclass
class Speculation:
    """What a self-speculative run produced (lists in prompt order), and its speed-up inputs."""

    draft_layer: int
    """E: the draft runs decoder blocks 1..E, then the lens."""
    draft_tokens: int
    """k: tokens drafted per round at most."""
    lens: str
    """The draft's lens."""
    draft_precision: str
    """The draft head's precision: "exact" (the model's own head) or a dtype name ("bfloat16")."""
    texts: list[str]
    """Decoded new text (special tokens skipped, cut before a stop string)."""
    token_ids: list[list[int]]
    """New token ids, including a final EOS token when the model produced one."""
    drafted: int
    """Draft tokens proposed, over all prompts."""
    accepted: int
    """Draft tokens the full model agreed with."""
    rounds: int
    """Full-depth forward passes (each prompt's prefill counts as one): each commits one token
    of the full model's own plus the drafts it accepted."""
    seconds: list[float]
    """Wall time per prompt (prefill, drafts and verification)."""
    wall_seconds: float
    """Wall time of the whole call."""
    draft_seconds: float = 0.0
    """Time in draft passes (blocks 1..E, one token each)."""
    verify_seconds: float = 0.0
    """Time in verification passes (blocks E+1..N over the drafted positions)."""
    prefill_seconds: float = 0.0
    """Time in the prompts' prefills (all N blocks)."""

    @property
    def new_tokens(self) -> int:
        return sum(map(len, self.token_ids))

    @property
    def acceptance_rate(self) -> float:
        """Accepted over drafted draft tokens (0 when nothing was drafted)."""
        return self.accepted / self.drafted if self.drafted else 0.0

    @property
    def tokens_per_round(self) -> float:
        """New tokens per full-depth pass: 1 is plain decoding, k + 1 the most a round gives."""
        return self.new_tokens / self.rounds if self.rounds else 0.0

    @property
    def tokens_per_second(self) -> float:
        spent = sum(self.seconds)
        return self.new_tokens / spent if spent else 0.0

    def summary(self) -> str:
        return (f"self-speculative decoding, draft layer {self.draft_layer}, {self.draft_tokens} "
                f"draft tokens, {self.draft_precision} draft head: acceptance {self.acceptance_rate:.1%} "
                f"({self.accepted}/{self.drafted}), "
                f"{self.tokens_per_round:.2f} tokens per full pass, {self.new_tokens} tokens in "
                f"{sum(self.seconds):.2f} s ({self.tokens_per_second:.1f} tokens/s; draft "
                f"{self.draft_seconds:.2f} s, verify {self.verify_seconds:.2f} s, prefill "
                f"{self.prefill_seconds:.2f} s)")


# ---------------------------------------------------------------- the draft's head

DRAFT_PRECISIONS = ("auto", "exact", "bfloat16")


class _CastHead(nn.Module):
    """A copy of a linear output head in another dtype: hidden states cast in, logits cast back."""

    def __init__(self, head: nn.Linear, dtype: torch.dtype) -> None:
        super().__init__()
        self.register_buffer("weight", head.weight.detach().to(dtype), persistent=False)
        bias = None if head.bias is None else head.bias.detach().to(dtype)
        self.register_buffer("bias", bias, persistent=False)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(hidden.to(self.weight.dtype), self.weight, self.bias).to(hidden.dtype)


def draft_head_precision(model: nn.Module, precision: str = "auto") -> str:
    """"exact" or "bfloat16": auto picks bfloat16 for a float32 linear head on hardware with
    native bf16 (where it is about 4x faster), else exact."""
    from piilab.runtime import native_bf16

    if precision not in DRAFT_PRECISIONS:
        raise PiilabError(f"unknown draft precision {precision!r}: use {', '.join(DRAFT_PRECISIONS)}")
    head = arch.unembedding(model)
    plain = type(head) is nn.Linear  # a PEFT-wrapped head would lose its adapter in a copy
    if precision == "bfloat16" and not plain:
        raise PiilabError(f"the output head is a {type(head).__name__}, not a plain linear layer, so "
                          f"it has no bfloat16 copy: use draft precision exact")
    if precision == "auto":
        fits = plain and head.weight.dtype == torch.float32 and native_bf16(head.weight.device.type)
        return "bfloat16" if fits else "exact"
    return precision


def draft_lens(model: nn.Module, lens: Lens, precision: str) -> Lens:
    """The draft's lens: `lens`, its unembedding done by a copy of the head in `precision`."""
    if precision == "exact":
        return lens
    cheap = _CastHead(arch.unembedding(model), getattr(torch, precision))

    def head(hidden: torch.Tensor) -> torch.Tensor:
        with arch.unembedding_swapped(model, cheap):
            return lens.head(hidden)

    return Lens(lens.name, lens.translate, head)


# ---------------------------------------------------------------- the layer stack


class _Stack:
    """What the block wrappers do in the current pass."""

    def __init__(self, draft_layer: int) -> None:
        self.draft_layer = draft_layer
        self.cache = None
        self.keep = 0  # the block whose output (1, T, H) is kept
        self.kept: torch.Tensor | None = None
        self.replay: dict[int, tuple[torch.Tensor, torch.Tensor]] | None = None  # verify passes
        self.states: torch.Tensor | None = None  # block E's outputs from the draft: (1, m, H)
        self.tail: tuple | None = None  # what follows the hidden state when a block returns a tuple


class _Block(nn.Module):
    """A decoder block that keeps its output when asked, or replays the draft in a verify pass."""

    def __init__(self, index: int, block: nn.Module, stack: _Stack) -> None:
        super().__init__()
        self.index, self.block, self.stack = index, block, stack

    def forward(self, hidden, *args, **kwargs):
        s = self.stack
        if s.replay is not None and self.index <= s.draft_layer:
            # the draft already ran this block on these positions: put its keys and values back
            keys, values = s.replay[self.index]
            s.cache.update(keys, values, self.index - 1)
            # only block E's output feeds block E+1; the blocks below pass their input through
            state = s.states if self.index == s.draft_layer else hidden
            return state if s.tail is None else (state, *s.tail)
        out = self.block(hidden, *args, **kwargs)
        if self.index == s.keep:
            s.kept = out[0] if isinstance(out, tuple) else out
            s.tail = tuple(out[1:]) if isinstance(out, tuple) else None
        return out


@dataclass
class _Run:
    """What every prompt of one call shares."""

    model: nn.Module
    lens: Lens  # the draft's
    decoding: Decoding
    eos: list[int]
    device: torch.device
    stack: _Stack
    blocks: list[_Block]
    n_layers: int
    draft_layer: int
    draft_tokens: int

    def forward(self, top: int, keep: int, ids: list[int], start: int) -> torch.Tensor:
        """The model's own forward over blocks 1..top at positions start..; block `keep`'s
        outputs: (T, H)."""
        self.stack.keep = keep
        with arch.truncated(self.model, top, wrap=lambda i, block: self.blocks[i - 1]):
            arch.backbone(self.model)(
                input_ids=torch.tensor([ids], device=self.device),
                position_ids=torch.arange(start, start + len(ids), device=self.device)[None],
                cache=self.stack.cache, use_cache=True)
        return self.stack.kept[0]

    def full_choice(self, hidden: torch.Tensor) -> list[int]:
        """The full model's greedy tokens from block N's outputs (T, H)."""
        return choose(arch.logit_lens(self.model, hidden), self.decoding, self.eos, None).tolist()


def _new_cache(model: nn.Module):
    from transformers import DynamicCache

    cache = DynamicCache(config=arch.base_model(model).config)
    for layer in cache.layers:
        if getattr(layer, "is_sliding", False):
            # a sliding-window layer drops old positions unless told to keep them for a crop
            layer.activate_past_recording()
    return cache


def _decode_one(run: _Run, prompt: list[int], tokenizer) -> tuple[list[int], dict]:
    """One prompt: new token ids and counts/timings."""
    d, E, N, stack = run.decoding, run.draft_layer, run.n_layers, run.stack
    stats = dict(drafted=0, accepted=0, rounds=1, draft=0.0, verify=0.0, prefill=0.0)
    stack.cache, stack.replay = _new_cache(run.model), None
    tokens: list[int] = []

    def emit(new: list[int]) -> bool:
        """Commit tokens one by one, as plain decoding would; True once the sequence ends."""
        for token in new:
            tokens.append(token)
            if token in run.eos or len(tokens) == d.max_new_tokens:
                return True
            if d.stop:
                text = tokenizer.decode(tokens, skip_special_tokens=True)
                if cut_at_stop(text, d.stop)[1]:
                    return True
        return False

    # prefill: the prompt through all N blocks; the first token is the full model's
    clock = time.perf_counter()
    hidden = run.forward(N, N, prompt, 0)  # (T, H)
    done = emit(run.full_choice(hidden[-1:]))
    position = len(prompt)  # of the last committed token, whose keys are not cached yet
    now = time.perf_counter()
    stats["prefill"] += now - clock
    clock = now
    while not done:
        # never draft more than can be committed within max_new_tokens
        budget = min(run.draft_tokens, d.max_new_tokens - len(tokens) - 1)
        # draft: blocks 1..E, one token at a time, from the last committed token
        inputs, drafts, states = [tokens[-1]], [], []
        while True:
            states.append(run.forward(E, E, inputs[-1:], position + len(inputs) - 1))  # (1, H)
            if len(drafts) == budget:
                break
            drafts.append(int(choose(run.lens(E, states[-1]), d, run.eos, None)))
            if drafts[-1] in run.eos:  # the row would end there: nothing to draft after it
                break
            inputs.append(drafts[-1])
        m = len(inputs)
        now = time.perf_counter()
        stats["draft"] += now - clock
        clock = now
        # verify: blocks 1..E replay the draft's keys and values; E+1..N run on the m positions
        stack.replay = {}
        for block in range(1, E + 1):
            layer = stack.cache.layers[block - 1]
            stack.replay[block] = (layer.keys[..., -m:, :], layer.values[..., -m:, :])
            layer.crop(-m)  # every block's cache at p again: masks and positions read block 1's
        stack.states = torch.cat(states)[None]  # (1, m, H)
        try:
            full = run.full_choice(run.forward(N, N, inputs, position))  # m predictions
        finally:
            stack.replay = stack.states = None
        accepted = 0
        while accepted < len(drafts) and drafts[accepted] == full[accepted]:
            accepted += 1
        commit = drafts[:accepted] + full[accepted:accepted + 1]
        stats["drafted"] += len(drafts)
        stats["accepted"] += accepted
        stats["rounds"] += 1
        done = emit(commit)
        # keep the cache of the committed positions only (the last token's keys come next round)
        stack.cache.crop(-(m - len(commit)))
        position += len(commit)
        now = time.perf_counter()
        stats["verify"] += now - clock
        clock = now
    stack.cache = None
    return tokens, stats


# ---------------------------------------------------------------- the API


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@arch.one_at_a_time
def speculative_generate(
    model: nn.Module,
    tokenizer,
    prompts: Sequence[str],
    draft_layer: int,
    *,
    draft_tokens: int = 4,
    lens: str | Lens = "norm",
    draft_precision: str = "auto",
    decoding: Decoding | None = None,
    add_special_tokens: bool = True,
    progress: bool = True,
) -> Speculation:
    """Greedy full-model decoding of every prompt, drafted from exit layer `draft_layer`.

    The texts and token ids are those of `generate(..., layers=[N])` (greedy); the draft (blocks
    1..draft_layer, then `lens`) only proposes up to `draft_tokens` tokens per round, which the
    full model checks in one pass that reuses the draft's KV cache. Prompts run one at a time.
    `draft_precision` is the draft head's: "exact", "bfloat16", or "auto" (bfloat16 for a float32
    model on hardware with native bf16); it moves acceptance, never the output.
    """
    wall = time.perf_counter()
    decoding = decoding or Decoding()
    total = arch.num_layers(model)
    if not _is_int(draft_layer) or not 1 <= draft_layer < total:
        raise PiilabError(f"draft layer {draft_layer} is out of range: self-speculation drafts "
                          f"from a layer in 1..{total - 1} (the model has {total})")
    if not _is_int(draft_tokens) or draft_tokens < 1:
        raise PiilabError(f"draft tokens must be at least 1, not {draft_tokens}")
    if decoding.sample:
        raise PiilabError("self-speculative decoding is greedy only: sampling is not supported")
    encoded = prepare_prompts(model, tokenizer, prompts, decoding, add_special_tokens)
    precision = draft_head_precision(model, draft_precision)
    stack = _Stack(draft_layer)
    run = _Run(model, draft_lens(model, make_lens(model, lens), precision), decoding, eos_token_ids(model, tokenizer),
               next(model.parameters()).device, stack,
               [_Block(i, block, stack) for i, block in enumerate(arch.decoder_layers(model), 1)],
               total, draft_layer, draft_tokens)
    log.info("self-speculative decoding of %d prompts: draft layer %d of %d (lens %s, %s head), "
             "up to %d draft tokens per round", len(encoded), draft_layer, total, run.lens.name,
             precision, draft_tokens)

    from tqdm.auto import tqdm

    token_ids, seconds = [], []
    totals = dict(drafted=0, accepted=0, rounds=0, draft=0.0, verify=0.0, prefill=0.0)
    with torch.inference_mode():
        for prompt in tqdm(encoded, unit="prompt", desc="speculative",
                           disable=None if progress else True):
            start = time.perf_counter()
            ids, stats = _decode_one(run, prompt, tokenizer)
            seconds.append(time.perf_counter() - start)
            token_ids.append(ids)
            for key, value in stats.items():
                totals[key] += value

    texts = [new_text(tokenizer, ids, run.eos, decoding.stop) for ids in token_ids]
    result = Speculation(draft_layer, draft_tokens, run.lens.name, precision, texts, token_ids,
                         totals["drafted"], totals["accepted"], totals["rounds"], seconds,
                         time.perf_counter() - wall, totals["draft"], totals["verify"],
                         totals["prefill"])
    log.info("%s", result.summary())
    return result
