"""The answers a text allows, as a character automaton: `None`, or lines `VALUE (LABEL)` where
VALUE is a span of the text (a whitespace run may be written as one space) and LABEL is in the set.

Copy-constrained decoding (piilab.layers.constrain) walks it one token at a time.
"""

from __future__ import annotations

import codecs
from collections.abc import Iterable
from dataclasses import dataclass

from piilab.data.answer import NO_PII

# Configurations of the automaton (it is nondeterministic: " (" may continue a value that holds
# a parenthesis in the text, or start the label). Each is a tuple whose first item is its kind.
LINE = 0   # (LINE, where): at a line start; where = 2 first line, 1 first line after one
           # leading space (some tokenizers' words carry it), 0 a later line
NONE = 1   # (NONE, k): the first k characters of "None" written
VALUE = 2  # (VALUE, i): the value written so far is a span of the text that ends at index i
GAP = 3    # (GAP,): the space of " (" after a value
LABEL = 4  # (LABEL, prefix): inside the parentheses, `prefix` of a label written
CLOSED = 5  # (CLOSED,): a whole line written, ")" last

_UTF8 = codecs.getincrementaldecoder("utf-8")


@dataclass(frozen=True)
class AnswerState:
    """Where an answer stands: the automaton's live configurations, and the bytes of a character
    that a token began but did not finish (byte-level vocabularies split characters)."""

    configs: frozenset
    pending: bytes = b""


class AnswerGrammar:
    """Every valid answer for one text and label set (design.md, "Answer format")."""

    def __init__(self, text: str, labels: Iterable[str]) -> None:
        self.text = text
        self.labels = frozenset(labels)
        self.label_prefixes = {label[:i] for label in self.labels for i in range(len(label) + 1)}
        # where a value may start: every non-space character, by character
        self.starts: dict[str, list[int]] = {}
        for i, ch in enumerate(text):
            if not ch.isspace():
                self.starts.setdefault(ch, []).append(i)
        # for each index inside a whitespace run, the index just after the run
        self.run_end = list(range(1, len(text) + 1))
        for i in range(len(text) - 2, -1, -1):
            if text[i].isspace() and text[i + 1].isspace():
                self.run_end[i] = self.run_end[i + 1]

    def start(self) -> AnswerState:
        """The state before the first character of the answer."""
        return AnswerState(frozenset({(LINE, 2)}))

    def after(self, written: str) -> AnswerState | None:
        """The state once `written` (an answer's first part) is written; None if it is invalid."""
        return self.advance(self.start(), written.encode("utf-8")) if written else self.start()

    # ------------------------------------------------------------ characters

    def step(self, configs: frozenset, ch: str) -> frozenset:
        """The configurations after one more character (empty: the answer is no longer valid)."""
        out: set = set()
        text, n = self.text, len(self.text)
        for config in configs:
            kind = config[0]
            if kind == VALUE:
                i = config[1]
                if ch == " ":
                    if not text[i - 1].isspace():  # a value ends on a visible character
                        out.add((GAP,))
                    if i < n and text[i].isspace() and self.run_end[i] < n:
                        out.add((VALUE, self.run_end[i]))  # a whitespace run as one space
                if i < n and text[i] == ch and ch not in "\r\n" and (i + 1 < n or not ch.isspace()):
                    out.add((VALUE, i + 1))
            elif kind == LINE:
                if ch in self.starts:
                    out.update((VALUE, i + 1) for i in self.starts[ch])
                if config[1] and ch == NO_PII[0]:
                    out.add((NONE, 1))
                if config[1] == 2 and ch == " ":
                    out.add((LINE, 1))
            elif kind == GAP:
                if ch == "(":
                    out.add((LABEL, ""))
            elif kind == LABEL:
                prefix = config[1]
                if ch == ")" and prefix in self.labels:
                    out.add((CLOSED,))
                elif prefix + ch in self.label_prefixes:
                    out.add((LABEL, prefix + ch))
            elif kind == CLOSED:
                if ch == "\n":
                    out.add((LINE, 0))
            elif kind == NONE:
                k = config[1]
                if k < len(NO_PII) and NO_PII[k] == ch:
                    out.add((NONE, k + 1))
        return frozenset(out)

    def accepting(self, state: AnswerState) -> bool:
        """Whether the answer may end here: after `None`, after a whole line, or after its newline."""
        return not state.pending and any(
            c == (NONE, len(NO_PII)) or c == (CLOSED,) or c == (LINE, 0) for c in state.configs)

    def between_items(self, state: AnswerState) -> bool:
        """Whether the answer stands where an item may begin or a new line may follow one."""
        return not state.pending and any(c[0] in (LINE, CLOSED) for c in state.configs)

    def only_none(self, state: AnswerState) -> bool:
        """Whether every way on from here writes `None` (no item)."""
        return all(c[0] == NONE for c in state.configs)

    def could_begin(self, configs: frozenset, head: bytes) -> bool:
        """Whether some character allowed next starts with the bytes `head` (a split character)."""
        chars = {self.text[c[1]] for c in configs if c[0] == VALUE and c[1] < len(self.text)}
        if any(c[0] == LINE for c in configs):
            chars.update(self.starts)
        return any(ch.encode("utf-8").startswith(head) for ch in chars)

    # ------------------------------------------------------------ bytes

    def advance(self, state: AnswerState, data: bytes) -> AnswerState | None:
        """The state after a token's bytes, or None if they make the answer invalid."""
        decoder = _UTF8()
        try:
            chars = decoder.decode(state.pending + data, final=False)
        except UnicodeDecodeError:
            return None
        configs = state.configs
        for ch in chars:
            configs = self.step(configs, ch)
            if not configs:
                return None
        pending = decoder.getstate()[0]
        if pending and not self.could_begin(configs, pending):
            return None
        return AnswerState(configs, pending)

    def completions(self, state: AnswerState) -> list[str]:
        """Short texts that lead from `state` towards an answer that may end (the forced way on,
        when the model ranks no valid token high): close a value with " (", finish a label..."""
        if state.pending:
            return []
        out: list[str] = []
        for config in state.configs:
            kind = config[0]
            if kind == VALUE:
                out.append(" (")
            elif kind == GAP:
                out.append("(")
            elif kind == LABEL:
                out += sorted(label[len(config[1]):] + ")" for label in self.labels
                              if label.startswith(config[1]))
            elif kind == NONE:
                out.append(NO_PII[config[1]:])
            elif kind == LINE and config[1]:
                out.append(NO_PII)
        return [text for text in dict.fromkeys(out) if text]
