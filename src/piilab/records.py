"""Canonical records shared by every stage (design.md, "Canonical records")."""

from __future__ import annotations

from dataclasses import dataclass, field
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

    def to_dict(self) -> dict[str, Any]:
        return {"start": self.start, "end": self.end, "label": self.label, "value": self.value}


@dataclass
class Document:
    """A text with its PII spans (sorted by offset) and where it came from."""

    id: str
    text: str
    spans: list[Span] | None = None  # None: unlabelled (e.g. a Kaggle test essay)
    source: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.spans is None:
            return
        self.spans = sorted(self.spans)
        for span in self.spans:
            if span.end > len(self.text) or self.text[span.start : span.end] != span.value:
                raise ValueError(
                    f"document {self.id}: span {span.start}:{span.end} value {span.value!r} "
                    "does not match the text"
                )
