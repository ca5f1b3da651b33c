"""Excerpts: a few lines or sentences cut from a composed document, so that training also sees
addresses whose owner is out of view (a bare address block, "Address: ...") and short text with
no PII at all. A composed document names its people near their details; without excerpts the
model learned that an address needs a person in view (the second real-text test set,
docs/evaluation.md).

Cuts fall only at line breaks and sentence ends outside every span, so each kept span is whole
and keeps its label; the excerpt's offsets are the document's, shifted."""

from __future__ import annotations

import random
import re
from collections.abc import Sequence

from piilab.data.records import Span

SPAN_CENTRED = 0.5
"""Share of an excerpt's draws centred on a span; the others hold no PII."""
CENTRE_LABELS = frozenset({"STREET_ADDRESS"})
"""What an excerpt is centred on: the labels the shipped model misses with their owner out of view.
On the second test set it finds e-mails (F1 0.98) and phones (0.75) without one, addresses not
(0.03); the twenty-second session's two trainings centred on any label (docs/evaluation.md)."""
_BREAK = re.compile(r"\s*\n\s*|(?<=[.!?])[ \t]+")
_WIDEN = (0, 0, 0, 0, 1, 2)
"""How many units an excerpt takes on each side of the one it is centred on (mostly none)."""


def units(text: str, spans: Sequence[Span]) -> list[tuple[int, int]]:
    """(start, end) of the lines and sentences of `text`, split only where no span is cut."""
    bounds = [0]
    for m in _BREAK.finditer(text):
        if 0 < m.start() and m.end() < len(text) and not any(s.start < m.end() and m.start() < s.end for s in spans):
            bounds += [m.start(), m.end()]
    bounds.append(len(text))
    return [(bounds[i], bounds[i + 1]) for i in range(0, len(bounds), 2)]


def excerpt(rng: random.Random, text: str, spans: Sequence[Span]) -> tuple[str, list[Span]]:
    """A window of `text`: half the time around one of its addresses (when it has one), else
    within lines and sentences that hold no span, so short text without PII is as common as short
    text with it; its spans shifted to it. A document with no line free of PII is centred on any
    of its spans."""
    parts = units(text, spans)
    free = [not any(a <= s.start < b for s in spans) for a, b in parts]
    centres = [s for s in spans if s.label in CENTRE_LABELS] or ([] if any(free) else list(spans))
    if centres and (rng.random() < SPAN_CENTRED or not any(free)):
        centre = rng.choice(centres)
        first = next(i for i, (_, end) in enumerate(parts) if centre.start < end)
        last = next(i for i, (_, end) in enumerate(parts) if centre.end <= end)
        first = max(0, first - rng.choice(_WIDEN))
        last = min(len(parts) - 1, last + rng.choice(_WIDEN))
    else:
        first = last = rng.choice([i for i, ok in enumerate(free) if ok])
        for _ in range(rng.choice(_WIDEN)):  # widen only over lines and sentences without PII
            first -= first > 0 and free[first - 1]
        for _ in range(rng.choice(_WIDEN)):
            last += last < len(parts) - 1 and free[last + 1]
    start, end = parts[first][0], parts[last][1]
    kept = [Span.trusted(s.start - start, s.end - start, s.label, s.value) for s in spans
            if start <= s.start and s.end <= end]
    return text[start:end], kept
