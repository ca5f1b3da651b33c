"""Real prose as carriers (issue 16, item 1): a real text with composed PII sentences inserted
where a writer could have put them, between sentences or between paragraphs.

The real text keeps its own labels (shifted past the insertion); the inserted sentence comes
from frames/carry.yaml, written for this use, with compose.py's people and values, so its spans
are exact. A carrier keeps its real text's source and takes its id as `split_group`, so the
split puts a text and every carrier made from it on one side.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterator, Sequence

from piilab.data.compose import DEFAULT_LOCALES, Writer
from piilab.data.people import Locale, load_yaml, new_person
from piilab.data.records import Document, Span

SENTENCE_ENDS = re.compile(r"(?<=[.!?])(?=[ \n]+[A-Z])")
"""A boundary after a sentence's end, where the next sentence starts with a capital."""
PARAGRAPH_STARTS = re.compile(r"(?<=\n\n)(?=\S)")
TWO_SENTENCES = 0.3
"""Share of carriers that receive two sentences at one place instead of one."""


def boundaries(text: str, spans: Sequence[Span]) -> list[tuple[int, str]]:
    """Where a sentence may go, as (offset, kind): 'start', 'paragraph' or 'sentence'; never
    inside a span, nor after the last paragraph's start (a sign-off or a quote's attribution)."""
    paragraphs = [m.start() for m in PARAGRAPH_STARTS.finditer(text)]
    last_paragraph = paragraphs[-1] if paragraphs else len(text)
    places = [(0, "start"), *((at, "paragraph") for at in paragraphs[:-1])]
    places += [(m.start(), "sentence") for m in SENTENCE_ENDS.finditer(text) if m.start() < last_paragraph]
    return [(at, kind) for at, kind in places if not any(s.start < at < s.end for s in spans)]


def insert(doc: Document, at: int, kind: str, sentence: str, new_spans: Sequence[Span]) -> tuple[str, list[Span]]:
    """The text with `sentence` placed at `at`, and every span (the real text's, shifted, and the
    sentence's, moved to where it landed)."""
    before, after = doc.text[:at], doc.text[at:]
    piece = f" {sentence}" if kind == "sentence" else f"{sentence}\n\n"
    lead = 1 if kind == "sentence" else 0
    shift = len(piece)
    spans = [s if s.end <= at else Span(s.start + shift, s.end + shift, s.label, s.value) for s in doc.spans or ()]
    spans += [Span(at + lead + s.start, at + lead + s.end, s.label, s.value) for s in new_spans]
    return before + piece + after, sorted(spans)


def _sentences(rng: random.Random, locale: Locale, others: Sequence[Locale]) -> tuple[str, list[Span], list[str]]:
    """One or two inserted sentences about new people, with their spans and frame ids."""
    frames = list(enumerate(load_yaml("carry.yaml")["sentence"]))
    persons = {key: new_person(rng, locale if rng.random() < 0.7 else rng.choice(others)) for key in "abcd"}
    w = Writer(rng, "email", locale, persons)
    used = []
    for i, (index, frame) in enumerate(rng.sample(frames, 2 if rng.random() < TWO_SENTENCES else 1)):
        if i:
            w.put(" ")
        w.frame(frame)
        used.append(f"carry.sentence.{index}")
    return w.text(), w.spans, used


def carriers(texts: Sequence[Document], n: int, seed: int,
             locales: Sequence[str] = DEFAULT_LOCALES) -> Iterator[Document]:
    """`n` carriers of the real `texts` (drawn in turn from a seeded shuffle), reproducible from `seed`."""
    if n <= 0 or not texts:
        return
    rng = random.Random(f"carriers:{seed}")
    made: dict[str, Locale] = {}

    def locale(code: str) -> Locale:
        if code not in made:
            made[code] = Locale(code, seed=seed * 1013 + len(made))
        return made[code]

    order = list(texts)
    for i in range(n):
        if i % len(order) == 0:
            rng.shuffle(order)
        doc = order[i % len(order)]
        at, kind = rng.choice(boundaries(doc.text, doc.spans or ()))
        code = rng.choice(list(locales))
        home = locale(code)  # before the others: a locale's seed is its place in the order of first use
        others = [locale(c) for c in rng.sample(list(locales), min(2, len(locales)))]
        sentence, spans, used = _sentences(rng, home, others)
        text, all_spans = insert(doc, at, kind, sentence, spans)
        meta = {**doc.meta, "split_group": doc.id, "carrier": {"at": at, "kind": kind, "frames": used, "locale": code}}
        yield Document(f"{doc.id}+carry{i // len(order)}", text, all_spans, doc.source, meta)
