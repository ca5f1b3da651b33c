"""Canonical records shared by every stage (design.md, "Canonical records")."""

from __future__ import annotations

from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any


@dataclass(frozen=True, order=True)
class Span:
    """A labelled slice of a text: code-point offsets, end exclusive, value == text[start:end]."""

    start: int
    end: int
    label: str
    value: str

    def __post_init__(self) -> None:
        if not 0 <= self.start < self.end:
            raise ValueError(f"span offsets out of order: start={self.start} end={self.end}")
        if len(self.value) != self.end - self.start:
            raise ValueError(
                f"span value length {len(self.value)} does not match offsets {self.start}:{self.end}"
            )

    @classmethod
    def of(cls, text: str, start: int, end: int, label: str) -> "Span":
        """The span of `text[start:end]`, checked against the text's length."""
        if not 0 <= start < end <= len(text):
            raise ValueError(f"span {start}:{end} out of range for a text of length {len(text)}")
        return cls(start, end, label, text[start:end])

    @classmethod
    def trusted(cls, start: int, end: int, label: str, value: str) -> "Span":
        """A span whose checks the caller has made (0 <= start < end, value == text[start:end]).

        For the readers' hot paths: the same object as `Span(...)` at about half the cost, as it
        skips __post_init__ and the frozen dataclass's per-field object.__setattr__ calls.
        """
        span = _new(cls)
        fields = span.__dict__
        fields["start"], fields["end"], fields["label"], fields["value"] = start, end, label, value
        return span

    def to_dict(self) -> dict[str, Any]:
        return {"start": self.start, "end": self.end, "label": self.label, "value": self.value}


_new = object.__new__
# The order dataclass(order=True) gives spans (field by field), without a Python __lt__ per comparison.
_ORDER = attrgetter("start", "end", "label", "value")


@dataclass
class Document:
    """A text with its PII spans (sorted by offset) and where it came from."""

    id: str
    text: str
    spans: list[Span] | None = None  # None: unlabelled (e.g. a Kaggle test essay)
    source: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def trusted(cls, id: str, text: str, spans: list[Span] | None, source: str, meta: dict[str, Any]) -> "Document":
        """A document whose spans the caller has already checked, sorted and made exact (as
        `sources.base.check_spans` does): takes `spans` as it is, without __post_init__."""
        doc = _new(cls)
        fields = doc.__dict__
        fields["id"], fields["text"], fields["spans"], fields["source"], fields["meta"] = id, text, spans, source, meta
        return doc

    def __post_init__(self) -> None:
        if self.spans is None:
            return
        self.spans = spans = list(self.spans)
        # Readers give spans sorted and apart: strictly rising starts then prove the order, and
        # sorting (by the fields in turn, as Span's own comparisons do) is only needed otherwise.
        previous = -1
        for span in spans:
            if span.start <= previous:
                spans.sort(key=_ORDER)
                break
            previous = span.start
        text, n = self.text, len(self.text)
        for span in spans:
            if span.end > n or text[span.start : span.end] != span.value:
                raise ValueError(
                    f"document {self.id}: span {span.start}:{span.end} value {span.value!r} "
                    "does not match the text"
                )
