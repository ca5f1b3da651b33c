"""Instruction records: prompt styles, completions that parse back, windows that never cut."""

from __future__ import annotations

import random

import pytest

from piilab.data.answer import parse_answer
from piilab.data.instruct import (
    PROMPT_STYLES,
    Alpaca,
    PromptStyle,
    alpaca_record,
    build_record,
    completion,
    get_style,
    register_style,
    window_bounds,
    windows,
)
from piilab.data.labels import CANONICAL, DEFAULT_LABELS
from piilab.data.records import Document, Span
from piilab.errors import PiilabError


def doc_of(text, *pieces, **meta):
    spans, at = [], 0
    for value, label in pieces:
        start = text.index(value, at)
        spans.append(Span.of(text, start, start + len(value), label))
        at = start + len(value)
    return Document("d1", text, spans, "test", meta)


def test_default_prompt_lists_labels_with_definitions_then_the_text():
    doc = doc_of("Mail Jo at jo@x.org", ("Jo", "NAME"), ("jo@x.org", "EMAIL"))
    record = build_record(doc, "default", DEFAULT_LABELS)
    assert set(record) == {"id", "source", "prompt", "completion", "text", "spans", "meta"}
    for label, definition in CANONICAL.items():
        assert f"{label}: {definition}" in record["prompt"]
    assert record["prompt"].endswith("\n" + doc.text)
    assert record["completion"] == "Jo (NAME)\njo@x.org (EMAIL)"
    assert record["spans"] == [s.to_dict() for s in doc.spans]
    assert record["meta"] == {"doc_id": "d1", "window": 0, "n_windows": 1, "offset": 0}
    assert list(record)[-1] == "meta"  # the split tags serialised records by this


def test_alpaca_style_uses_the_original_sections():
    doc = doc_of("Mail Jo", ("Jo", "NAME"))
    prompt = build_record(doc, "alpaca", ["NAME"])["prompt"]
    assert "### Instruction:\n" in prompt and "### Input:\nMail Jo\n\n### Response:\n" in prompt
    assert "EMAIL" not in prompt  # only the chosen label set
    row = Document("a:1", "", None, "alpaca", {"instruction": "Name a colour.", "output": "Blue."})
    record = alpaca_record(row, "alpaca")
    assert record["spans"] is None and record["completion"] == "Blue."
    assert "### Input" not in record["prompt"] and "Name a colour." in record["prompt"]
    assert alpaca_record(row, "default")["prompt"] == "Name a colour."


def test_style_registry(monkeypatch):
    monkeypatch.setattr("piilab.data.instruct.PROMPT_STYLES", dict(PROMPT_STYLES))
    assert set(PROMPT_STYLES) >= {"default", "alpaca"}
    assert isinstance(get_style("alpaca"), Alpaca)

    class Terse(PromptStyle):
        name = "terse-test"

        def pii(self, text, labels):
            return f"PII? {text}"

        def instruction(self, instruction, input):
            return instruction

    register_style(Terse())
    assert build_record(doc_of("Jo", ("Jo", "NAME")), "terse-test")["prompt"] == "PII? Jo"
    with pytest.raises(PiilabError, match="unknown prompt style"):
        get_style("nope")


@pytest.mark.parametrize("pieces, expected", [
    ([], []),
    ([("Jo", "NAME"), ("Jo", "NAME"), ("x@y.z", "EMAIL")], [("Jo", "NAME"), ("x@y.z", "EMAIL")]),
    ([("12 Oak St\nSpringfield", "STREET_ADDRESS")], [("12 Oak St Springfield", "STREET_ADDRESS")]),
    ([("(555) 010-2000", "PHONE_NUM")], [("(555) 010-2000", "PHONE_NUM")]),
])
def test_completion_is_the_answer_format_and_parses_back(pieces, expected):
    text = " and ".join(v for v, _ in pieces) or "nothing here"
    doc = doc_of(text, *pieces)
    answer = completion(doc.spans)
    assert parse_answer(answer) == expected
    assert answer == ("None" if not expected else answer)
    for value, _ in parse_answer(answer):
        assert value in " ".join(text.split())  # multi-line values are written on one line


def test_unlabelled_document_has_no_record():
    with pytest.raises(PiilabError, match="unlabelled"):
        build_record(Document("u", "text", None, "kaggle"))


def random_doc(rng: random.Random, n_words: int) -> Document:
    words, spans, at = [], [], 0
    for _ in range(n_words):
        if rng.random() < 0.08:
            value = " ".join(rng.choice(["Ana", "Bo", "Lee", "Maria", "Chen", "Okafor"]) for _ in range(rng.randint(1, 4)))
            spans.append(Span(at, at + len(value), "NAME", value))
        else:
            value = rng.choice(["the", "essay", "is", "about", "design", "thinking", "and", "change"])
        words.append(value)
        at += len(value) + 1
    return Document("r", " ".join(words), spans, "test")


@pytest.mark.parametrize("seed", range(8))
def test_windows_never_cut_an_entity_and_cover_every_span(seed):
    rng = random.Random(seed)
    doc = random_doc(rng, rng.randint(50, 400))
    max_chars, overlap = rng.choice([(60, 10), (120, 30), (300, 0), (200, 60)])
    parts = windows(doc, max_chars, overlap)
    bounds = window_bounds(doc.text, doc.spans, max_chars, overlap) if len(doc.text) > max_chars else [(0, len(doc.text))]
    assert bounds[0][0] == 0 and bounds[-1][1] == len(doc.text)
    covered = set()
    for (start, end), part in zip(bounds, parts):
        assert part.text == doc.text[start:end]
        longest = max((s.end - s.start for s in doc.spans if s.start >= start and s.end <= end), default=0)
        assert end - start <= max(max_chars, longest)
        for span in doc.spans:
            assert span.end <= start or span.start >= end or (span.start >= start and span.end <= end), "cut"
        for span in part.spans:
            assert part.text[span.start:span.end] == span.value
            covered.add((span.start + start, span.end + start))
    assert covered == {(s.start, s.end) for s in doc.spans}
    for (s1, e1), (s2, e2) in zip(bounds, bounds[1:]):
        assert s1 < s2 <= e1  # contiguous or overlapping, always moving on


def test_window_records_have_their_own_ids_and_meta():
    doc = random_doc(random.Random(1), 300)
    records = [build_record(part) for part in windows(doc, 200, 40)]
    assert len(records) > 3
    assert [r["id"] for r in records] == [f"r#w{i}" for i in range(len(records))]
    assert all(r["meta"]["doc_id"] == "r" and r["meta"]["n_windows"] == len(records) for r in records)
    assert [r["meta"]["window"] for r in records] == list(range(len(records)))


def test_an_entity_longer_than_a_window_is_kept_whole():
    text = "intro " + "x" * 50 + " outro words here"
    doc = doc_of(text, ("x" * 50, "ID_NUM"))
    parts = windows(doc, 20, 5)
    assert any(p.spans and p.spans[0].value == "x" * 50 for p in parts)
    with pytest.raises(PiilabError, match="overlap"):
        window_bounds(text, doc.spans, 20, 20)


def test_windows_move_on_past_a_long_entity_they_cannot_cut():
    # Once crept forward 2 characters a window, each ending where the entity began.
    text = "word " * 62 + "https://example.org/" + "p" * 237 + " tail" * 61
    doc = doc_of(text, ("https://example.org/" + "p" * 237, "URL_PERSONAL"))
    bounds = window_bounds(doc.text, doc.spans, 400, 200)
    assert len(bounds) <= 5
    assert all(s1 < s2 <= e1 < e2 for (s1, e1), (s2, e2) in zip(bounds, bounds[1:]))
    address = "Flat 1 " + "Long Street " * 63
    doc = doc_of("x " * 100 + address + " y" * 100, (address.strip(), "STREET_ADDRESS"))
    (entity,) = doc.spans  # 762 characters: a window of its own, between two of text
    assert window_bounds(doc.text, doc.spans, 500, 100) == [(0, 200), (200, 962), (962, 1163)]
    assert (entity.start, entity.end) == (200, 962)


def random_long_entity_text(rng: random.Random) -> tuple[str, list[Span]]:
    """Words, unlabelled runs without whitespace, and entities up to 300 characters."""
    pieces, spans, at = [], [], 0
    for _ in range(rng.randint(5, 80)):
        kind = rng.random()
        if kind < 0.15:
            value = "".join(rng.choice("ab c") for _ in range(rng.randint(1, 300))).strip() or "x"
            spans.append(Span(at, at + len(value), "ID_NUM", value))
        else:
            value = "y" * rng.randint(1, 150) if kind < 0.2 else rng.choice(["a", "the", "essay", "x\ny"])
        pieces.append(value)
        at += len(value) + 1
    return " ".join(pieces), spans


def test_windows_always_move_on_and_never_cut_or_lose_a_span():
    rng = random.Random(7)
    for _ in range(400):
        text, spans = random_long_entity_text(rng)
        max_chars = rng.randint(1, 400)
        overlap = rng.randint(0, max_chars - 1)
        bounds = window_bounds(text, spans, max_chars, overlap)
        assert bounds[0][0] == 0 and bounds[-1][1] == len(text)
        for start, end in bounds:
            alone = any(s.start == start and s.end == end for s in spans)  # an over-long entity
            assert end - start <= max_chars or alone
            assert not any(s.start < at < s.end for s in spans for at in (start, end)), "cut"
        assert all(any(start <= s.start and s.end <= end for start, end in bounds) for s in spans), "lost"
        assert all(s1 < s2 <= e1 < e2 for (s1, e1), (s2, e2) in zip(bounds, bounds[1:])), "repeated"
        assert len(bounds) <= 2 * len(text) / (max_chars - overlap) + 2
