"""Copy-constrained decoding: a PII answer may only copy spans of its text and name labels of its set.

At each step, each constrained row takes the most likely of its top-k tokens whose bytes keep the
answer a valid prefix (piilab.data.answer_grammar); when none does, the shortest forced way on
(" (", the rest of a label, EOS), then the rest of the vocabulary in order of likelihood.

Greedy decoding writes one answer; where an item may begin (or a new line follow the last one)
the model often gives a second way on a fair chance. `Notes` keeps those ways, so that
extract's second look can decode one more line from each (piilab.second_look).
"""

from __future__ import annotations

import logging
import math
import re
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from piilab.data.answer_grammar import AnswerGrammar, AnswerState
from piilab.errors import PiilabError
from piilab.layers.ranking import top_k

log = logging.getLogger(__name__)

TOP_K = 50
"""Candidates per step tried in order of likelihood before the forced way on."""

_BYTE_TOKEN = re.compile(r"<0x([0-9A-Fa-f]{2})>")
_TABLES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


# ---------------------------------------------------------------- token bytes


def _gpt2_byte_decoder() -> dict[str, int]:
    """GPT-2's byte-level alphabet, reversed: each printable stand-in character -> its byte."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), 256)]
    chars, extra = list(keep), 0
    for b in range(256):
        if b not in keep:
            keep.append(b)
            chars.append(256 + extra)
            extra += 1
    return {chr(c): b for b, c in zip(keep, chars)}


def _decoder_kinds(tokenizer) -> set[str]:
    """The kinds of step in the tokenizer's decoder (ByteLevel, Replace, ByteFallback, ...)."""
    import json

    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise PiilabError("copy-constrained decoding needs a fast (Rust) tokenizer; pass "
                          "--free-decoding to decode without it")
    found: set[str] = set()

    def walk(node) -> None:
        if isinstance(node, dict):
            if "type" in node:
                found.add(node["type"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(json.loads(backend.to_str()).get("decoder"))
    return found


def token_bytes(tokenizer) -> list[bytes | None]:
    """The bytes each token id adds to decoded text; None for special tokens (built once)."""
    try:
        return _TABLES[tokenizer]
    except (KeyError, TypeError):
        pass
    kinds = _decoder_kinds(tokenizer)
    special = set(tokenizer.all_special_ids)
    added = {i: t for i, t in tokenizer.added_tokens_decoder.items()}
    byte_level = _gpt2_byte_decoder() if "ByteLevel" in kinds else None
    table: list[bytes | None] = []
    for i, piece in enumerate(tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))):
        if i in special or piece is None or (i in added and added[i].special):
            table.append(None)
        elif i in added:
            table.append(added[i].content.encode("utf-8"))
        elif byte_level is not None:
            table.append(bytes(byte_level[c] for c in piece)
                         if all(c in byte_level for c in piece) else None)
        elif "ByteFallback" in kinds and _BYTE_TOKEN.fullmatch(piece):
            table.append(bytes([int(piece[3:5], 16)]))
        else:  # SentencePiece: "▁" stands for a space
            table.append(piece.replace("▁", " ").encode("utf-8"))
    _check_table(tokenizer, table)
    try:
        _TABLES[tokenizer] = table
    except TypeError:
        pass
    return table


def _check_table(tokenizer, table: list[bytes | None], samples: int = 200) -> None:
    """Decode a spread of tokens after a plain one; the table must predict the text exactly."""
    texts = {}
    for i, data in enumerate(table):
        try:
            texts[i] = data.decode("utf-8") if data else None
        except UnicodeDecodeError:
            texts[i] = None
    plain = [i for i, t in texts.items() if t and t.isalpha() and t.isascii() and len(t) == 1]
    ids = [i for i, t in texts.items() if t]
    if not plain or not ids:
        raise PiilabError("copy-constrained decoding cannot read this tokenizer's vocabulary; "
                          "pass --free-decoding to decode without it")
    for i in ids[:: max(1, len(ids) // samples)]:
        got = tokenizer.decode([plain[0], i], skip_special_tokens=False,
                               clean_up_tokenization_spaces=False)
        if got != texts[plain[0]] + texts[i]:
            raise PiilabError(
                f"copy-constrained decoding cannot read this tokenizer: token {i} decodes as "
                f"{got!r}, not {texts[plain[0]] + texts[i]!r}; pass --free-decoding to decode "
                "without it")


# ---------------------------------------------------------------- guiding a call


@dataclass
class Notes:
    """What copy-constrained greedy decoding saw besides its answers, per prompt index:
    `ways_on`, each valid token other than the choice (and EOS) that the model gave at least
    `threshold` where an item may begin or a new line follow one, as the answer written up to
    and with it, with that probability (None: not looked for), and in `tokens` as the answer's
    token ids up to and with it; `overridden`, the prompts where the constraint took another
    token than the model's first choice at least once. Keyed by prompt only: a call that decodes
    several exit layers mixes their notes."""

    threshold: float | None = None
    ways_on: dict[int, dict[bytes, float]] = field(default_factory=dict)
    tokens: dict[int, dict[bytes, tuple[int, ...]]] = field(default_factory=dict)
    overridden: set[int] = field(default_factory=set)

    def way_on(self, prompt: int, written: bytes, probability: float,
               tokens: tuple[int, ...] = ()) -> None:
        mine = self.ways_on.setdefault(prompt, {})
        if probability > mine.get(written, 0.0):
            mine[written] = probability
            self.tokens.setdefault(prompt, {})[written] = tokens


class CopyGuide:
    """For one `generate` call: each prompt's answer grammar (None: that prompt decodes free)."""

    def __init__(self, tokenizer, answers: Sequence[tuple | None], decoding, eos: Sequence[int],
                 top_k: int = TOP_K, notes: Notes | None = None) -> None:
        """`answers`: per prompt None (free), (text, labels), or (text, labels, written) for an
        answer whose first part the prompt already ends with. `notes` (greedy decoding
        only) collects what decoding saw besides the answers."""
        self.tokenizer = tokenizer
        self.table = token_bytes(tokenizer)
        self.grammars = [AnswerGrammar(*answer[:2]) if answer is not None else None for answer in answers]
        self.starts = [self._start(g, answer) for g, answer in zip(self.grammars, answers)]
        self.notes = None if decoding.sample else notes
        self.decoding, self.eos, self.top_k = decoding, set(eos), max(top_k, decoding.top_k or 1)
        self.eos_bonus = math.log(decoding.eos_weight) if decoding.eos_weight != 1.0 else 0.0
        self._first_tokens: dict[str, int | None] = {}
        self.steps = self.overridden = self.forced = 0
        """Constrained tokens chosen; of them, where the model's own first choice was invalid;
        and where no token of the top k was valid."""

    @classmethod
    def for_answers(cls, tokenizer, answers, decoding, eos: Sequence[int],
                    notes: Notes | None = None) -> CopyGuide | None:
        """The guide of a call whose prompts have these rules (None if none has one)."""
        if not answers or not any(answers):
            return None
        return cls(tokenizer, answers, decoding, eos, notes=notes)

    @staticmethod
    def _start(grammar: AnswerGrammar | None, answer) -> AnswerState | None:
        if grammar is None:
            return None
        written = answer[2] if len(answer) > 2 else ""
        state = grammar.after(written)
        if state is None:
            raise PiilabError("an answer's given beginning does not copy its text")
        return state

    def rows(self, prompt_of_row: Sequence[int]) -> RowGuide | None:
        """The guide of one batch, whose rows decode these prompts (None if all decode free)."""
        if not any(self.grammars[p] for p in prompt_of_row):
            return None
        return RowGuide(self, list(prompt_of_row))

    def summary(self) -> str:
        return (f"copy constraint: {self.overridden} of {self.steps} tokens were not the model's "
                f"first choice ({self.forced} forced past the top {self.top_k})")

    def first_token(self, text: str) -> int | None:
        if text not in self._first_tokens:
            ids = self.tokenizer.encode(text, add_special_tokens=False)
            self._first_tokens[text] = ids[0] if ids else None
        return self._first_tokens[text]


class RowGuide:
    """One batch's answer states, by row slot; masks logits to valid tokens and advances."""

    def __init__(self, guide: CopyGuide, prompts: list[int]) -> None:
        self.guide, self.prompts = guide, prompts
        self.grammars = [guide.grammars[p] for p in prompts]
        self.states = [guide.starts[p] for p in prompts]
        self.next: list[dict[int, AnswerState | None]] = [{} for _ in prompts]
        self.written = [b"" for _ in prompts]  # each row's answer so far (for `Notes`)
        self.ids: list[list[int]] = [[] for _ in prompts]  # ... and its tokens
        self.noting = [True for _ in prompts]  # a branch's row notes nothing in `Notes`
        self.overrode = [False for _ in prompts]  # the constraint overrode the model there

    def branch(self, prompt: int, written: bytes) -> int:
        """A new slot that decodes `prompt`'s answer on from `written` (a way on forked from its
        row: layers/lookup.py), noting nothing in `Notes`; its own `overrode` says whether the
        constraint overrode the model's first choice after the fork."""
        grammar = self.guide.grammars[prompt]
        state = grammar.advance(self.guide.starts[prompt], written) if written else self.guide.starts[prompt]
        if state is None:
            raise PiilabError("a branch's beginning does not copy its text")
        self.prompts.append(prompt)
        self.grammars.append(grammar)
        self.states.append(state)
        self.next.append({})
        self.written.append(written)
        self.ids.append([])
        self.noting.append(False)
        self.overrode.append(False)
        return len(self.prompts) - 1

    def _try(self, slot: int, token: int) -> bool:
        """Whether `token` keeps row `slot`'s answer valid (its next state is kept for `advance`)."""
        grammar, state, table = self.grammars[slot], self.states[slot], self.guide.table
        if token in self.guide.eos:
            ok = grammar.accepting(state)
            self.next[slot][token] = state if ok else None
            return ok
        data = table[token] if token < len(table) else None
        after = grammar.advance(state, data) if data else None
        self.next[slot][token] = after
        return after is not None

    def _valid(self, slot: int, ranked: torch.Tensor, top: list[int]) -> list[int]:
        """Row `slot`'s allowed tokens: the first valid in rank order (greedy), or every valid one
        in the sampling pool; else the forced way on, else the first valid in the vocabulary."""
        guide = self.guide
        pool = (guide.decoding.top_k or guide.top_k) if guide.decoding.sample else 1
        found = [t for t in top[:pool] if self._try(slot, t)] if pool > 1 else []
        if not found:
            found = next(([t] for t in top if self._try(slot, t)), [])
        if found:
            guide.overridden += top[0] not in found
            return found
        guide.forced += 1
        guide.overridden += 1
        grammar, state = self.grammars[slot], self.states[slot]
        if grammar.accepting(state) and guide.eos:
            return [min(guide.eos)]
        forced = [guide.first_token(text) for text in grammar.completions(state)]
        forced = [t for t in forced if t is not None and self._try(slot, t)]
        if forced:
            return [max(forced, key=lambda t: float(ranked[t]))]
        for t in ranked.argsort(descending=True).tolist():
            if self._try(slot, t):
                return [t]
        return [min(guide.eos)] if guide.eos else [top[0]]  # nothing can follow: end the row

    def rank(self, logits: torch.Tensor) -> tuple[torch.Tensor, list[list[int]]]:
        """Scores (R, V) as `choose` ranks tokens (EOS weight included) and each row's top k ids,
        best first: one top-k call for all the rows."""
        guide = self.guide
        ranked = logits.float()
        if guide.eos_bonus and guide.eos:
            ranked = ranked.clone()
            ranked[:, sorted(guide.eos)] += guide.eos_bonus
        return ranked, top_k(ranked, guide.top_k)[1].tolist()

    def _allowed(self, slot: int, ranked: torch.Tensor, top: list[int]) -> list[int]:
        self.next[slot] = {}
        self.guide.steps += 1
        allowed = self._valid(slot, ranked, top)
        self.overrode[slot] |= top[0] not in allowed
        notes = self.guide.notes if self.noting[slot] else None
        if notes is not None and top[0] not in allowed:
            notes.overridden.add(self.prompts[slot])
        if notes is not None and notes.threshold and self.grammars[slot].between_items(
                self.states[slot]):
            self._note_ways_on(slot, ranked, top, allowed)
        return allowed

    def _note_ways_on(self, slot: int, ranked: torch.Tensor, top: list[int], chosen: list[int]) -> None:
        """Note each valid token other than the choice (and EOS) that is likely enough."""
        notes, grammar = self.guide.notes, self.grammars[slot]
        total = torch.logsumexp(ranked, dim=0)
        for token in top:
            probability = math.exp(float(ranked[token] - total))
            if probability < notes.threshold:
                break  # `top` is in order of likelihood
            if token in chosen or token in self.guide.eos or not self._try(slot, token):
                continue
            if not grammar.only_none(self.next[slot][token]):
                notes.way_on(self.prompts[slot], self.written[slot] + self.guide.table[token],
                             probability, (*self.ids[slot], token))

    def pick(self, slot: int, ranked: torch.Tensor, top: list[int]) -> int:
        """Greedy decoding's constrained token for row `slot` from its ranked scores (V,) and top
        ids (`rank`'s), without masking the vocabulary; the row's state advances by it."""
        if self.grammars[slot] is None:  # a row decoding free
            return top[0]
        token = self._allowed(slot, ranked, top)[0]  # greedy: the first valid in rank order
        self.advance([slot], [token])
        return token

    def mask(self, logits: torch.Tensor, slots: Sequence[int]) -> torch.Tensor:
        """Logits (R, V) with every token that would break a row's answer set to -inf."""
        ranked, tops = self.rank(logits)
        masked = torch.full_like(logits, -math.inf)
        for row, slot in enumerate(slots):
            if self.grammars[slot] is None:
                masked[row] = logits[row]
                continue
            index = torch.tensor(self._allowed(slot, ranked[row], tops[row]), device=logits.device)
            masked[row, index] = logits[row, index].clamp(min=torch.finfo(logits.dtype).min)
        return masked

    def advance(self, slots: Sequence[int], tokens: Sequence[int]) -> None:
        """Each constrained row's state after the token chosen for it."""
        for slot, token in zip(slots, tokens):
            if self.grammars[slot] is not None:
                if token not in self.next[slot]:
                    self._try(slot, token)
                self.states[slot] = self.next[slot][token] or self.states[slot]
                if token not in self.guide.eos and self.guide.notes is not None:
                    self.written[slot] += self.guide.table[token] or b""
                    self.ids[slot].append(token)
