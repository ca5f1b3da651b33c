"""Documents -> instruction records (design.md, "Canonical records"): prompt styles and windows.

A prompt style turns a text and a label set into the plain instruction text (no chat template:
training and generation render it through the model's own template). Styles live in a registry
by name, so a dataset card and a trained adapter can name the style they used.

Long documents are cut into windows of at most `max_chars` characters (about max_chars / 4
tokens of English) that overlap by about `overlap` characters. A cut never falls inside an
entity: a window ends before an entity it would cut, and the next one starts at or before it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from piilab.data.answer import format_answer
from piilab.data.labels import DEFAULT_LABELS, definition
from piilab.data.records import Document, Span
from piilab.errors import PiilabError

# Meta keys a record carries over from its document; everything else stays behind.
RECORD_META = ("doc_id", "template_id", "genre", "locale", "language", "window", "n_windows",
               "offset", "frames", "features", "hard_negatives", "split_group", "carrier")


class PromptStyle:
    """How a PII text, and an instruction row, become the prompt a model is trained on."""

    name = "base"

    def pii(self, text: str, labels: Sequence[str]) -> str:
        raise NotImplementedError

    def instruction(self, instruction: str, input: str) -> str:
        raise NotImplementedError


@lru_cache(maxsize=64)
def label_lines(labels: tuple[str, ...]) -> str:
    """'LABEL: definition' lines, built once per label set (every record repeats them)."""
    return "\n".join(f"{label}: {definition(label)}" for label in labels)


class Default(PromptStyle):
    """A short instruction listing the label set with one-line definitions, then the text."""

    name = "default"

    def pii(self, text: str, labels: Sequence[str]) -> str:
        return (
            "List the personal information (PII) in the text.\n"
            f"{label_lines(tuple(labels))}\n"
            "Write each item once, in order, one per line as: value (LABEL). If there is none, write: None\n\n"
            f"Text:\n{text}"
        )

    def instruction(self, instruction: str, input: str) -> str:
        return f"{instruction}\n\n{input}" if input else instruction


class Alpaca(PromptStyle):
    """The original experiment's wording: Stanford Alpaca's Instruction / Input / Response."""

    name = "alpaca"
    WITH_INPUT = (
        "Below is an instruction that describes a task, paired with an input that provides further "
        "context. Write a response that appropriately completes the request.\n\n"
        "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"
    )
    NO_INPUT = (
        "Below is an instruction that describes a task. Write a response that appropriately "
        "completes the request.\n\n### Instruction:\n{instruction}\n\n### Response:\n"
    )

    def pii(self, text: str, labels: Sequence[str]) -> str:
        task = (
            "Identify all personally identifiable information (PII) in the input. "
            f"Use these labels: {', '.join(labels)}. List each item once, in order of appearance, "
            "one per line as: value (LABEL). If there is no PII, answer None."
        )
        return self.instruction(task, text)

    def instruction(self, instruction: str, input: str) -> str:
        template = self.WITH_INPUT if input else self.NO_INPUT
        return template.format(instruction=instruction, input=input)


PROMPT_STYLES: dict[str, PromptStyle] = {style.name: style for style in (Default(), Alpaca())}


def register_style(style: PromptStyle) -> None:
    """Add a prompt style to the registry under its name."""
    PROMPT_STYLES[style.name] = style


def get_style(style: str | PromptStyle) -> PromptStyle:
    """A style by name (or the style itself); an unknown name is a PiilabError."""
    if isinstance(style, PromptStyle):
        return style
    try:
        return PROMPT_STYLES[style]
    except KeyError:
        raise PiilabError(f"unknown prompt style {style!r}; choose from {', '.join(PROMPT_STYLES)}") from None


_SPACE_RUN = re.compile(r"\s+")


def answer_value(value: str) -> str:
    """A span value as the answer writes it: one line (an address over two lines gets a space)."""
    return " ".join(value.split()) if "\n" in value or "\r" in value else value


def completion(spans: Sequence[Span]) -> str:
    """The answer for a text's spans (design.md, "Answer format")."""
    return format_answer([
        (s.value if "\n" not in s.value and "\r" not in s.value else answer_value(s.value), s.label) for s in spans
    ])


def _record_meta(doc: Document) -> dict[str, Any]:
    meta = {"doc_id": doc.id, "window": 0, "n_windows": 1, "offset": 0}
    source = doc.meta
    if source:
        for key in RECORD_META:
            if key in source:
                meta[key] = source[key]
    return meta


def build_record(doc: Document, style: str | PromptStyle = "default", labels: Sequence[str] = DEFAULT_LABELS) -> dict:
    """The instruction record of one labelled document (or window): prompt, completion, spans."""
    if doc.spans is None:
        raise PiilabError(f"document {doc.id} is unlabelled: no completion can be written for it")
    meta = _record_meta(doc)
    record_id = doc.id if meta["n_windows"] == 1 else f"{meta['doc_id']}#w{meta['window']}"
    return {
        "id": record_id,
        "source": doc.source,
        "prompt": get_style(style).pii(doc.text, labels),
        "completion": completion(doc.spans),
        "text": doc.text,
        "spans": [{"start": s.start, "end": s.end, "label": s.label, "value": s.value} for s in doc.spans],
        "meta": meta,  # last, so a split can tag a serialised record cheaply (data/build.py)
    }


def alpaca_record(doc: Document, style: str | PromptStyle = "default") -> dict:
    """The record of an Alpaca-style row (read by sources.alpaca): its own prompt and answer."""
    return {
        "id": doc.id,
        "source": doc.source,
        "prompt": get_style(style).instruction(doc.meta["instruction"], doc.text),
        "completion": doc.meta["output"],
        "text": doc.text,
        "spans": None,
        "meta": {"doc_id": doc.id, "window": 0, "n_windows": 1, "offset": 0},
    }


def _inside(spans: Sequence[Span], at: int) -> Span | None:
    """The span that position `at` falls strictly inside (a cut there would split it)."""
    for span in spans:
        if span.start < at < span.end:
            return span
        if span.start >= at:
            break
    return None


def _word_start(text: str, spans: Sequence[Span], at: int, limit: int) -> int:
    """A window start at or after `at`: just after the first whitespace run before `limit`, and
    moved past a span it would fall inside (that span lies wholly before `limit`)."""
    gap = _SPACE_RUN.search(text, at, limit)
    at = gap.end() if gap else at
    span = _inside(spans, at)
    return span.end if span is not None else at


def _next_start(text: str, spans: Sequence[Span], start: int, end: int, overlap: int, step: int) -> int:
    """Where the window after [start, end) begins: about `overlap` before `end`, at a word.

    A start that falls in a span moves back to it (the entity shows in both windows) when that
    costs at most half a step; otherwise past it, as the window before holds the whole entity.
    """
    at = max(end - overlap, start + 1)
    gap = _SPACE_RUN.search(text, at, end)
    at = gap.end() if gap else at
    span = _inside(spans, at)
    if span is None:
        return at
    return span.start if span.start > start and span.start >= end - overlap - step // 2 else span.end


def _window_end(text: str, spans: Sequence[Span], start: int, prev_end: int, floor: int,
                max_chars: int) -> tuple[int, int]:
    """(start, end) of a window that may begin at `start` but must end at or after `floor`.

    The end is the last whitespace in the window's back half, else its hard limit; a cut inside
    an entity moves back to the entity's start. If that falls short of `floor` (it would repeat
    the window before), the window takes the entity whole and starts as late as it can.
    """
    limit = start + max_chars
    cut = max(text.rfind(c, max(start + max_chars // 2, floor), limit + 1) for c in " \n\t")
    end = cut if cut >= floor else limit
    span = _inside(spans, end)
    if span is None:
        return start, end
    if span.start >= floor:
        return start, span.start
    latest = min(span.start, prev_end)  # no later, or the entity or the text before it is lost
    wanted = max(start, span.end - max_chars)
    if wanted > latest:
        # The entity alone is longer than a window, or it starts after the previous end and
        # cannot fit with it: an over-long entity gets a window of its own, the other ends before it.
        return (span.start, span.end) if span.start <= prev_end else (start, span.start)
    return (start if wanted == start else _word_start(text, spans, wanted, latest)), span.end


def window_bounds(text: str, spans: Sequence[Span], max_chars: int, overlap: int) -> list[tuple[int, int]]:
    """(start, end) of each window: at most max_chars long unless it is one entity longer than that.

    Cuts go to whitespace where there is some in the back half of a window, and never inside a
    span. Consecutive windows overlap by about `overlap` characters, and each ends at least a
    quarter step (max_chars - overlap) past the one before unless an entity forces a shorter one.
    """
    if max_chars <= 0 or overlap < 0 or overlap >= max_chars:
        raise PiilabError(f"need 0 <= overlap < max_chars, got max_chars={max_chars} overlap={overlap}")
    n, step = len(text), max_chars - overlap
    bounds: list[tuple[int, int]] = []
    start, prev_end, floor = 0, 0, 1
    while True:
        end = n
        if start + max_chars < n:
            start, end = _window_end(text, spans, start, prev_end, floor, max_chars)
        bounds.append((start, end))
        if end >= n:
            return bounds
        start, prev_end = _next_start(text, spans, start, end, overlap, step), end
        floor = end + max(1, step // 4)


def windows(doc: Document, max_chars: int = 2000, overlap: int = 200) -> list[Document]:
    """A document as one or more windows; spans are re-based and each window knows its place."""
    if len(doc.text) <= max_chars:
        return [doc]  # one window: the document itself (build_record fills in the window meta)
    spans = doc.spans or []
    bounds = window_bounds(doc.text, spans, max_chars, overlap)
    out = []
    for i, (start, end) in enumerate(bounds):
        inner = None
        if doc.spans is not None:
            inner = [Span(s.start - start, s.end - start, s.label, s.value)
                     for s in spans if s.start >= start and s.end <= end]
        meta = {**doc.meta, "doc_id": doc.id, "window": i, "n_windows": len(bounds), "offset": start}
        if "hard_negatives" in meta:  # only those this window shows
            meta["hard_negatives"] = [n for n in meta["hard_negatives"] if n["value"] in doc.text[start:end]]
        out.append(Document(doc.id, doc.text[start:end], inner, doc.source, meta))
    return out
