"""Prompt-lookup decoding: greedy decoding in batches, drafting each row's next tokens from its own
prompt, with the prompts' shared start prefilled once per call.

An extraction answer copies spans of its input ("Jane Doe (NAME)"), so the tokens that follow the
answer's last few tokens somewhere in the prompt (or earlier in the answer) are a good guess of
what comes next. Each round, every live row of the batch:

1. Drafts up to k tokens: the continuation of the latest earlier occurrence of its last n tokens
   (n = 3, then 2, then 1) in its prompt and answer so far. Tokens are compared by their text
   without leading spaces, because a value that starts an answer line ("Jane") is the same word
   as the text's " Jane" but another token. A `guess`, where one is given, drafts first
   (extraction's: an answer line's label from its value's shape, piilab.answer_drafts).
2. Runs its last committed token and its drafts through the model in one forward pass over the
   whole batch (rows with fewer drafts are padded; the attention mask hides the padding).
3. Keeps the longest prefix of drafts equal to the model's own greedy choices, then the model's
   next choice; the cache positions of rejected drafts stay, hidden by the attention mask.

Every committed token is the model's greedy choice given the tokens before it, so the output is
plain greedy decoding (`generate(..., layers=[L])`); only the number of forward passes changes.
Under the copy constraint (layers/constrain.py) the greedy choice is the constrained one, taken
position by position through a row's drafts, so the output is constrained `generate`'s.
The prompts' common start (chat template, instruction, label definitions) runs once per call (or
once for many, under piilab.extract.prepared) and its keys and values are copied into every
batch's cache. Batches are continuous: once half of a
batch's rows have finished, the next prompts are prefilled and join the rows still decoding, so
short answers do not leave a few long ones to run alone while prompts wait.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from piilab import runtime
from piilab import second_look as look
from piilab.errors import PiilabError
from piilab.layers.attention import folded_attention, grouped_kv_in_sdpa, masks_by_position, sliding_window
from piilab.layers.cache import branch_places, compacted, pack_when_sparse, roomy_cache, select_rows
from piilab.layers.constrain import Notes, CopyGuide, RowGuide
from piilab.layers.decode import Decoding, choose, cut_at_stop, eos_token_ids, new_text, prepare_prompts
from piilab.layers.drafts import Drafter, Guess, base_drafter, through_eos, token_keys
from piilab.layers.lens import Lens
from piilab.layers.lenses import make_lens
from piilab.models import arch

log = logging.getLogger(__name__)

PREFIXES = "_piilab_prefixes"  # a model attribute: {(layer, shared start): its keys and values}
KEPT_PREFIXES = 4  # shared starts kept on a prepared model, the oldest dropped first


@dataclass
class LookupRun:
    """What a prompt-lookup run produced (lists in prompt order), and how many passes it took."""

    layer: int
    texts: list[str]
    """Decoded new text (special tokens skipped, cut before a stop string)."""
    token_ids: list[list[int]]
    """New token ids, including a final EOS token when the model produced one."""
    passes: int = 0
    """Forward passes of a batch after its prefill (plain decoding: one per token of its longest row)."""
    drafted: int = 0
    """Draft tokens proposed, over all rows."""
    accepted: int = 0
    """Draft tokens the model agreed with."""
    prefix_tokens: int = 0
    """Tokens of the prompts' shared start, prefilled once."""
    wall_seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)
    """Seconds in the shared start's prefill, the batches' prefills and the decoding rounds."""
    widest_cache: int = 0
    """The most cache columns (held or hidden) a batch had at the end of a pass."""
    branches: list = field(default_factory=list)
    """The second look's branches (second_look.Branch), decoded, in the order their rows ended."""

    @property
    def acceptance_rate(self) -> float:
        return self.accepted / self.drafted if self.drafted else 0.0

    def summary(self) -> str:
        new = sum(map(len, self.token_ids))
        return (f"prompt-lookup decoding at layer {self.layer}: {len(self.texts)} prompts, {new} "
                f"tokens in {self.passes} batch passes, drafts accepted {self.acceptance_rate:.1%} "
                f"({self.accepted}/{self.drafted}), shared start {self.prefix_tokens} tokens, "
                f"cache of {self.widest_cache} columns at most, {self.wall_seconds:.2f} s")


# ---------------------------------------------------------------- the model


class _Keep(nn.Module):
    """Wraps the exit block: keeps its output hidden states (B, T, H) for the lens."""

    def __init__(self, block: nn.Module) -> None:
        super().__init__()
        self.block, self.kept = block, None

    def forward(self, hidden, *args, **kwargs):
        out = self.block(hidden, *args, **kwargs)
        self.kept = out[0] if isinstance(out, tuple) else out
        return out


@dataclass
class _Run:
    """What every batch of one call shares."""

    model: nn.Module
    tokenizer: object
    lens: Lens
    layer: int
    decoding: Decoding
    eos: list[int]
    pad_id: int
    device: torch.device
    draft_tokens: int
    key_of: object
    prefix: list[int]
    prefix_cache: list[tuple[torch.Tensor, torch.Tensor]] | None = None
    guide: CopyGuide | None = None  # copy-constrained answers, if asked

    def __post_init__(self) -> None:
        self.config = arch.base_model(self.model).config
        self.window = sliding_window(self.config)  # attention masks by position where set

    def forward(self, ids: torch.Tensor, position_ids: torch.Tensor, cache,
                held: torch.Tensor | None) -> torch.Tensor:
        """Blocks 1..layer over ids (B, T) at `position_ids` on the cache, whose columns (ids' own
        last) hold the positions `held` (B, S; -1: hidden; None: every column, in order): the
        exit block's states (B, T, H)."""
        mask = None
        if held is not None:  # by position where a window counts them, else by column
            mask = masks_by_position(held, position_ids, self.config) if self.window else held >= 0
        keep = _Keep(arch.decoder_layers(self.model)[self.layer - 1])
        wrap = lambda i, block: keep if i == self.layer else block  # noqa: E731
        with arch.truncated(self.model, self.layer, wrap=wrap):
            arch.backbone(self.model)(input_ids=ids, attention_mask=mask, position_ids=position_ids,
                                      cache=cache, use_cache=True)
        return keep.kept

    def choices(self, logits: torch.Tensor, guard: RowGuide | None):
        """For the positions (P, V) of one pass: `pick(position, slot)`, the greedy token there
        given the tokens committed before it (constrained ones advance their row's state by it).
        Free choices are all made at once; constrained ones share one top-k call."""
        if guard is None:
            chosen = choose(logits, self.decoding, self.eos, None).tolist()
            return lambda position, slot: chosen[position]
        ranked, tops = guard.rank(logits)
        return lambda position, slot: guard.pick(slot, ranked[position], tops[position])

    def greedy(self, logits: torch.Tensor, guard: RowGuide | None, slots: Sequence[int]) -> list[int]:
        """The greedy token after each row of logits (R, V), row i being slot `slots[i]`."""
        pick = self.choices(logits, guard)
        return [pick(i, slot) for i, slot in enumerate(slots)]


def verify(pick, start: int, draft: list[int], slot: int, eos: Sequence[int] = ()) -> list[int]:
    """One row's commit, its positions starting at `start` in a pass's `pick`: the drafts that
    agree with the greedy choices, then the greedy choice after them (each choice is made given
    the tokens before it, as the copy constraint's answer state requires); an agreed EOS ends it."""
    for at in range(len(draft) + 1):
        token = pick(start + at, slot)
        if at == len(draft) or token != draft[at] or token in eos:
            return draft[:at] + [token]
    raise AssertionError("unreachable")


def _new_cache(run: _Run, rows: int):
    """A cache of roomy layers, holding the shared start's keys and values once per row."""
    cache = roomy_cache(run.config, windowed=run.window is not None)
    for index, (keys, values) in enumerate(run.prefix_cache or []):
        cache.update(keys.expand(rows, -1, -1, -1), values.expand(rows, -1, -1, -1), index)
    return cache


def _prefill_prefix(run: _Run) -> None:
    """The shared start through blocks 1..layer once; its keys and values kept for every batch
    (and for later calls, under piilab.extract.prepared, which sets the model's PREFIXES)."""
    kept, key = getattr(run.model, PREFIXES, {}), (run.layer, tuple(run.prefix))
    if not run.prefix or key in kept:
        run.prefix_cache = kept.get(key)
        return
    cache, n = _new_cache(run, 1), len(run.prefix)
    run.forward(torch.tensor([run.prefix], device=run.device),
                torch.arange(n, device=run.device)[None], cache, None)
    run.prefix_cache = kept[key] = [(layer.keys, layer.values) for layer in cache.layers[:run.layer]]
    while len(kept) > KEPT_PREFIXES:  # calls without a template start share their own prompts'
        del kept[next(iter(kept))]


def _prefill(run: _Run, suffixes: list[list[int]]):
    """New rows (each prompt = shared start + its suffix) through the model: their cache, the
    positions their columns hold (B, P + width; -1: hidden) and the exit block's states at their
    last tokens (B, H)."""
    dev, P = run.device, len(run.prefix)
    cache = _new_cache(run, len(suffixes))
    # the suffixes, left-padded after the shared start (the padding hidden)
    width = max(map(len, suffixes))
    ids = torch.tensor([[run.pad_id] * (width - len(s)) + s for s in suffixes], device=dev)
    real = torch.tensor([[1] * P + [0] * (width - len(s)) + [1] * len(s) for s in suffixes],
                        device=dev)
    held = torch.where(real.bool(), real.cumsum(-1) - 1, -1)  # positions as generate counts
    hidden = run.forward(ids, held[:, P:].clamp(min=0), cache, held)[:, -1]
    return cache, held, hidden


def _join(cache, held: torch.Tensor, other, other_held: torch.Tensor) -> torch.Tensor:
    """Append `other`'s rows to `cache` (in place), both padded at the end to the longer one;
    the joined positions. Where a position sits in the cache does not matter to attention (its
    place in the text is already in its key), so the padding is hidden and never attended to."""
    length = max(held.shape[1], other_held.shape[1])
    for mine, theirs in zip(cache.layers, other.layers):
        mine.join(theirs, length)
    pad = torch.nn.functional.pad
    return torch.cat([pad(held, (0, length - held.shape[1]), value=-1),
                      pad(other_held, (0, length - other_held.shape[1]), value=-1)])


def _decode_stream(run: _Run, suffixes: list[list[int]], base: Drafter, stats: dict,
                   batch_size: int, guard: RowGuide | None = None, finished=lambda: None,
                   fork=None):
    """Greedy decoding of every suffix (each prompt = shared start + suffix), at most
    `batch_size` rows at a time: once half the rows have finished, the next waiting prompts take
    their places (continuous batching), so passes do not run for a few long answers while prompts
    wait. `base` drafts from the shared start; `finished()` is called as each prompt's row ends.
    `fork(row, new ids)` gives the branches (second_look.Branch) of a row that ended, each
    decoded on from its way on to the end of its line, in that row's cache (`_fork`).
    New ids per suffix in the order given, and per branch (after the suffixes) its own."""
    d, dev = run.decoding, run.device
    tokens: list[list[int]] = [[] for _ in suffixes]
    drafters: dict[int, Drafter] = {}  # live rows' lookup tables
    starts = [len(run.prefix) + len(s) for s in suffixes]  # position of each row's first new token
    next_pos = list(starts)  # position of each row's last token
    branches: dict[int, object] = {}  # row -> the branch (second_look.Branch) it decodes
    waiting = list(range(len(suffixes)))
    rows: list[int] = []  # live rows, in cache order
    cache, held = None, None  # held[i, c]: the position column c holds for row i; -1: hidden

    def admit() -> None:
        """Prefill the next waiting prompts into free places; commit their first tokens."""
        nonlocal cache, held, rows
        clock = time.perf_counter()
        new, waiting[:] = waiting[:batch_size - len(rows)], waiting[batch_size - len(rows):]
        new_cache, new_held, hidden = _prefill(run, [suffixes[r] for r in new])
        firsts = run.greedy(run.lens(run.layer, hidden), guard, new)
        live = []
        for r, first in zip(new, firsts):
            if _emit(run, tokens[r], [first]):
                finished()  # one token: an answer that names nothing, so no branches
                continue
            drafters[r] = base.for_row(suffixes[r], [first])
            live.append(r)
        if len(live) < len(new):
            new_held = _keep_rows(new_cache, new_held, [new.index(r) for r in live])
        if live:
            if cache is None:
                cache, held = new_cache, new_held
            else:
                held = _join(cache, held, new_cache, new_held)
            rows = rows + live
        stats["prefill"] += time.perf_counter() - clock

    while waiting or rows:
        runtime.look_again()  # a pass at a time: a long stream notices a load that came later
        if waiting and len(rows) <= batch_size // 2:
            admit()
            if not rows:
                continue
        clock = time.perf_counter()
        # draft: up to k tokens per row, never more than the row can still commit
        room = [min(run.draft_tokens, d.max_new_tokens + (r in branches) - len(tokens[r]) - 1)
                for r in rows]
        drafts = [through_eos(drafters[r].draft(k), run.eos) for r, k in zip(rows, room)]
        K = max(map(len, drafts))
        inputs = [[tokens[r][-1]] + x + [run.pad_id] * (K - len(x)) for r, x in zip(rows, drafts)]
        fresh = torch.tensor([[1] * (1 + len(x)) + [0] * (K - len(x)) for x in drafts], device=dev)
        position_ids = torch.tensor([next_pos[r] for r in rows], device=dev)[:, None] + \
            torch.arange(1 + K, device=dev)  # (R, 1 + K)
        first_column = held.shape[1]
        held = torch.cat([held, torch.where(fresh.bool(), position_ids, -1)], dim=-1)
        hidden = run.forward(torch.tensor(inputs, device=dev), position_ids, cache, held)
        logits = run.lens(run.layer, hidden[fresh.bool()])  # (real positions, V) in row order
        pick = run.choices(logits, guard)
        stats["passes"] += 1
        # accept the drafts the model agrees with, then its own next token
        keep, ended, at = [], [], 0
        for i, (r, x) in enumerate(zip(rows, drafts)):
            commit = verify(pick, at, x, r, run.eos)
            at += 1 + len(x)
            a = len(commit) - 1
            stats["drafted"] += len(x)
            stats["accepted"] += a
            held[i, first_column + 1 + a:] = -1  # rejected drafts' cache positions: hidden
            next_pos[r] += len(commit)
            before = len(tokens[r])
            if _emit(run, tokens[r], commit, r in branches):
                del drafters[r]
                if r not in branches:
                    finished()
                    ended += [(i, branch) for branch in (fork(r, tokens[r]) if fork else [])]
            else:
                drafters[r].extend(tokens[r][before:])
                keep.append(i)
        if ended:  # the ended rows' branches take places in the batch
            parents = [rows[i] for i, _ in ended]
            # each way on takes the place of its answer's token at this position
            cuts = [starts[p] + len(branch.tokens) - 1 for p, (_, branch) in zip(parents, ended)]
            held, places = _fork(cache, held, len(rows), keep, [i for i, _ in ended], cuts)
            for parent, (_, branch), place, cut in zip(parents, ended, places, cuts):
                r = len(tokens)
                if guard.branch(guard.prompts[parent], branch.written.encode("utf-8")) != r:
                    raise AssertionError("a branch's row and its guard slot differ")
                tokens.append([branch.tokens[-1]])
                starts.append(cut)
                next_pos.append(cut)
                drafters[r] = base.for_row(suffixes[parent], branch.tokens)
                branches[r] = branch
                rows[place:place + 1] = [r]  # its place: an ended row's, or a new one at the end
                keep.append(place)
            keep.sort()
        if len(keep) < len(rows):  # finished rows leave the batch and the cache
            order = compacted(len(rows), keep)
            held = _keep_rows(cache, held, order)
            rows = [rows[i] for i in order]
        # cache positions hidden in every row serve no one: drop them from the end
        unused = int((held < 0).all(0).flip(0).int().cumprod(0).sum()) if rows else 0
        if unused:
            cache.crop(-unused)
            held = held[:, :-unused]
        if not rows:
            cache, held = None, None
        else:
            stats["widest"] = max(stats["widest"], held.shape[1])
            held = pack_when_sparse(cache, held)
        stats["decode"] += time.perf_counter() - clock
    return tokens, branches


def _keep_rows(cache, held: torch.Tensor, order: list[int]) -> torch.Tensor:
    """Keep the rows `order` of the cache, in that order; the positions their columns hold."""
    select_rows(cache, order)
    return held[torch.tensor(order, device=held.device, dtype=torch.long)]


def _fork(cache, held: torch.Tensor, rows: int, keep: list[int], parents: list[int],
          cuts: list[int]) -> tuple[torch.Tensor, list[int]]:
    """Places in the batch for branches of rows that ended this pass (at places `parents`, one
    per branch; cache.branch_places says where), each holding its row's cache with the positions
    from its way on's (`cuts`) on hidden: the way on takes the place of the token there. The
    batch's `held` and the places."""
    source, places = branch_places(rows, keep, parents)
    if source != list(range(rows)):
        held = _keep_rows(cache, held, source)
    for place, cut in zip(places, cuts):
        held[place, held[place] >= cut] = -1
    return held, places


def _emit(run: _Run, tokens: list[int], new: list[int], branch: bool = False) -> bool:
    """Commit tokens one by one, as plain decoding would; True once the sequence ends. A branch's
    first token is its way on: what follows it ends at a new line, or as a whole answer would."""
    d, first = run.decoding, int(branch)
    stop = (*d.stop, "\n") if branch else d.stop
    for token in new:
        tokens.append(token)
        if token in run.eos or len(tokens) - first == d.max_new_tokens:
            return True
        if stop and cut_at_stop(run.tokenizer.decode(tokens[first:], skip_special_tokens=True),
                                stop)[1]:
            return True
    return False


# ---------------------------------------------------------------- the API


def lookup_supported(model: nn.Module) -> str | None:
    """Why prompt-lookup decoding cannot run on this model (None: it can)."""
    config = arch.base_model(model).config
    kinds = set(getattr(config, "layer_types", None) or ()) - {"full_attention", "sliding_attention"}
    if sliding_window(config) is not None and kinds:
        # a window counts positions, not cache columns: masks by position cover these two kinds
        return f"its attention layers of kind {', '.join(sorted(kinds))} have a window"
    return None


@arch.one_at_a_time
def lookup_generate(
    model: nn.Module,
    tokenizer,
    prompts: Sequence[str],
    *,
    layer: int | None = None,
    lens: str | Lens = "norm",
    decoding: Decoding | None = None,
    batch_size: int = 16,
    draft_tokens: int = 4,
    share_prefix: bool = True,
    start: Sequence[int] = (),
    add_special_tokens: bool = True,
    progress: bool = True,
    answers: Sequence[tuple | None] | None = None,
    seeds: Sequence[str] = (),
    guess: Guess | None = None,
    notes: Notes | None = None,
    second_look: bool = False,
) -> LookupRun:
    """Greedy decoding of every prompt from exit `layer` (default: the last), drafting from the
    prompts themselves; the texts and token ids are those of `generate(..., layers=[layer])`.

    `draft_tokens` 0 decodes one token per pass (no drafts); `share_prefix` False prefills each
    prompt whole. `start`, token ids that every prompt begins with (a template's), is the shared
    start where they do, so it is the same from call to call (piilab.extract.prepared keeps it
    run); else the prompts' common start is. Prompts are decoded shortest first, at most
    `batch_size` at a time, finished rows' places taken by the next prompts (continuous
    batching). `answers` and `notes` copy-constrain the answers and collect what decoding saw, as
    `generate` does. `seeds` are fragments of the answers to expect, each drafted as if EOS
    followed it (extraction's "None", " (NAME)"): they win over the shared start's tokens, never
    over a row's own. `guess` (layers/drafts.Guess), shown each row's answer so far, drafts first
    where it knows what comes next (piilab.answer_drafts). Drafts change how many passes decoding
    takes, never its answers: the model checks every drafted token.
    `second_look` (with `answers` and `notes` of a threshold) decodes each answer's branches
    (piilab.second_look.ways_to_take) as its row ends, each forked from the row's cache where its
    way on begins; they are in the result's `branches`, their continuations and `overridden` set.
    """
    wall = time.perf_counter()
    decoding = decoding or Decoding()
    if decoding.sample:
        raise PiilabError("prompt-lookup decoding is greedy only: sampling is not supported")
    if batch_size < 1:
        raise PiilabError("batch size must be at least 1")
    if draft_tokens < 0:
        raise PiilabError(f"draft tokens must be 0 or more, not {draft_tokens}")
    total = arch.num_layers(model)
    layer = total if layer is None else layer
    if not 1 <= layer <= total:
        raise PiilabError(f"exit layer {layer} is out of range: the model has layers 1..{total}")
    why_not = lookup_supported(model)
    if why_not:
        raise PiilabError(f"prompt-lookup decoding does not fit this model: {why_not}")
    encoded = prepare_prompts(model, tokenizer, prompts, decoding, add_special_tokens)
    if answers is not None and len(answers) != len(encoded):
        raise PiilabError(f"{len(answers)} answer constraints for {len(encoded)} prompts")
    eos = eos_token_ids(model, tokenizer)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (eos or [0])[0]
    shared = 0
    if share_prefix and encoded:
        # every prompt keeps at least its last token, whose state predicts the first new token
        shared = min(len(os.path.commonprefix(encoded)), min(map(len, encoded)) - 1)
        if start:  # never past the template's start: what follows is the texts' own, call by call
            shared = len(os.path.commonprefix([encoded[0][:shared], list(start)]))
    run = _Run(model, tokenizer, make_lens(model, lens), layer, decoding, eos, pad_id,
               next(model.parameters()).device, draft_tokens, token_keys(tokenizer),
               encoded[0][:shared] if encoded else [])
    run.guide = CopyGuide.for_answers(tokenizer, answers, decoding, eos, notes)
    log.info("prompt-lookup decoding of %d prompts at layer %d: up to %d draft tokens, shared "
             "start of %d tokens, batches of %d", len(encoded), layer, draft_tokens, shared,
             batch_size)
    stats = dict(passes=0, drafted=0, accepted=0, widest=0, prefix=0.0, prefill=0.0, decode=0.0)

    from tqdm.auto import tqdm

    token_ids: list[list[int] | None] = [None] * len(encoded)
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))  # less padding
    with torch.inference_mode(), grouped_kv_in_sdpa(run.device), folded_attention(model), \
            tqdm(total=len(encoded), unit="prompt", desc="lookup", disable=None if progress else True) as bar:
        clock = time.perf_counter()
        _prefill_prefix(run)
        base = base_drafter(run.key_of, run.prefix, [
            tokenizer.encode(seed, add_special_tokens=False) + eos[:1] for seed in seeds], guess)
        stats["prefix"] = time.perf_counter() - clock
        guard = run.guide.rows(order) if run.guide else None
        fork = None
        if second_look and notes is not None and guard is not None:
            def fork(row: int, ids: list[int]) -> list:
                return look.ways_to_take(order[row], new_text(tokenizer, ids, eos, decoding.stop),
                                         notes)
        out, forked = _decode_stream(run, [encoded[i][shared:] for i in order], base, stats,
                                     batch_size, guard, lambda: bar.update(1), fork)
        for i, row in zip(order, out):
            token_ids[i] = row
    texts = [new_text(tokenizer, ids, eos, decoding.stop) for ids in token_ids]
    for row, branch in forked.items():
        branch.continuation = new_text(tokenizer, out[row][1:], eos, (*decoding.stop, "\n"))
        branch.overridden = guard.overrode[row]
    result = LookupRun(layer, texts, token_ids, stats["passes"], stats["drafted"], stats["accepted"],
                       shared, time.perf_counter() - wall,
                       {k: stats[k] for k in ("prefix", "prefill", "decode")}, stats["widest"],
                       list(forked.values()))
    log.info("%s", result.summary())
    if run.guide:
        log.info(run.guide.summary())
    return result
