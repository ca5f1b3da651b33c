"""Prompt-lookup drafts: each row's next tokens guessed from its own prompt and answer so far
(layers/lookup.py checks them with the model).

Tokens are compared by their text without leading spaces, because a value that starts an answer
line ("Jane") is the same word as the text's " Jane" but another token. A row's drafter may also
be given a `guess`, asked first at every pass with the row's answer so far: where it knows what
comes next (piilab.answer_drafts: an answer line's label from its value's shape) it drafts that
instead of looking up.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

MAX_NGRAM = 3  # the longest run of last tokens looked up in the prompt

Guess = Callable[[Sequence[int]], "list[int] | None"]
"""guess(answer so far, as token ids) -> the tokens to draft next, or None to look them up."""


class Drafter:
    """One row's lookup table: each run of n <= MAX_NGRAM token keys -> where its latest
    continuation starts. Keys are token texts without leading spaces."""

    def __init__(self, key_of, max_ngram: int = MAX_NGRAM, guess: Guess | None = None) -> None:
        self.key_of, self.max_ngram, self.guess = key_of, max_ngram, guess
        self.ids: list[int] = []
        self.keys: list[str] = []
        self.table: dict[tuple[str, ...], int] = {}
        self.answer_from: int | None = None  # where the answer begins in `ids`, once it has

    def copy(self) -> "Drafter":
        twin = Drafter(self.key_of, self.max_ngram, self.guess)
        twin.ids, twin.keys, twin.table = list(self.ids), list(self.keys), dict(self.table)
        twin.answer_from = self.answer_from
        return twin

    def start_answer(self) -> None:
        """The tokens extended from now on are the answer's (what `guess` is shown)."""
        self.answer_from = len(self.ids)

    def for_row(self, prompt: Sequence[int], answer: Sequence[int]) -> "Drafter":
        """A copy for one row: this table, then the row's own prompt and its answer so far."""
        row = self.copy()
        row.extend(prompt)
        row.start_answer()
        row.extend(answer)
        return row

    def extend(self, ids: Sequence[int]) -> None:
        """Append tokens; every run of keys that now has a continuation points at it."""
        for token in ids:
            at = len(self.ids)
            for n in range(1, min(self.max_ngram, at) + 1):
                self.table[tuple(self.keys[at - n:at])] = at  # latest occurrence wins
            self.ids.append(token)
            self.keys.append(self.key_of(token))

    def draft(self, k: int) -> list[int]:
        """Up to k tokens: the guess's, where it has one, else those that followed the longest
        run of the last tokens seen before."""
        if k <= 0:
            return []
        if self.guess is not None and self.answer_from is not None:
            guessed = self.guess(self.ids[self.answer_from:])
            if guessed:
                return guessed[:k]
        for n in range(min(self.max_ngram, len(self.keys)), 0, -1):
            at = self.table.get(tuple(self.keys[-n:]))
            if at is not None:
                return self.ids[at:at + k]
        return []


def base_drafter(key_of, prefix: Sequence[int], seeds: Sequence[Sequence[int]] = (),
                 guess: Guess | None = None) -> Drafter:
    """The table every row's drafter starts from: the shared start's tokens, then each seed's.
    Latest occurrences win, so a seed's continuation wins over the shared start's, and a row's
    own tokens (added after) over both. Every row's drafter asks `guess` first."""
    base = Drafter(key_of, guess=guess)
    base.extend(prefix)
    for seed in seeds:
        base.extend(seed)
    return base


def token_keys(tokenizer):
    """token id -> its text without leading whitespace, memoised (the drafter's comparison key)."""
    memo: dict[int, str] = {}

    def key_of(token: int) -> str:
        key = memo.get(token)
        if key is None:
            key = memo[token] = tokenizer.decode([token]).lstrip()
        return key

    return key_of


def through_eos(draft: list[int], eos: Sequence[int]) -> list[int]:
    """A draft cut after its first EOS token: nothing after it could be committed."""
    for at, token in enumerate(draft):
        if token in eos:
            return draft[:at + 1]
    return draft

