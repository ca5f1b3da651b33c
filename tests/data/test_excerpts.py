"""Excerpts of composed documents: cut only between spans, spans kept whole and exact, about half
without PII, the other documents untouched, and short texts whose owner is out of view among them."""

from __future__ import annotations

import random

import pytest

from piilab.data import read_records
from piilab.data.build import BuildConfig, build_dataset
from piilab.data.compose import ComposeConfig, compose
from piilab.data.excerpts import excerpt, units
from piilab.data.records import Span
from piilab.errors import PiilabError

LETTER = "Dear Ms Weber,\nplease send it to:\nGontardstraße 7\n10178 Berlin\nThanks. Call me on 030 1234567."


def spans_of(text, *pairs):
    return [Span.of(text, text.index(value), text.index(value) + len(value), label) for label, value in pairs]


def test_units_are_lines_and_sentences_and_never_cut_a_span():
    spans = spans_of(LETTER, ("NAME", "Weber"), ("STREET_ADDRESS", "Gontardstraße 7\n10178 Berlin"))
    parts = [LETTER[a:b] for a, b in units(LETTER, spans)]
    assert parts == ["Dear Ms Weber,", "please send it to:", "Gontardstraße 7\n10178 Berlin", "Thanks.",
                     "Call me on 030 1234567."]


def test_an_excerpt_keeps_whole_exact_spans_or_holds_none():
    spans = spans_of(LETTER, ("NAME", "Weber"), ("STREET_ADDRESS", "Gontardstraße 7\n10178 Berlin"),
                     ("PHONE_NUM", "030 1234567"))
    seen, empty = {}, 0
    for seed in range(300):
        text, kept = excerpt(random.Random(seed), LETTER, spans)
        assert text and text in LETTER
        assert all(text[s.start:s.end] == s.value for s in kept)
        assert len(kept) == sum(s.value in text for s in spans)  # nothing in view goes unlabelled
        seen[text] = kept
        empty += not kept
    assert "Gontardstraße 7\n10178 Berlin" in seen  # a bare address block, its owner cut away
    assert all(kept[0].label == "STREET_ADDRESS" for kept in seen.values() if len(kept) == 1)  # centred on it
    without = [text for text, kept in seen.items() if not kept]
    assert "Thanks." in without and "please send it to:" in without
    assert 100 < empty < 200  # about half the draws hold no PII


def test_a_text_without_an_address_or_a_free_line_is_centred_on_any_span():
    text = "Call 030 1234567.\nMail kim@example.org"
    spans = spans_of(text, ("PHONE_NUM", "030 1234567"), ("EMAIL", "kim@example.org"))
    cut, kept = excerpt(random.Random(0), text, spans)
    assert kept and all(cut[s.start:s.end] == s.value for s in kept)


def test_a_text_without_spans_gives_a_window_of_itself():
    text, kept = excerpt(random.Random(3), "One line.\nAnother line.\nA third.", [])
    assert kept == [] and text in ("One line.", "Another line.", "A third.", "One line.\nAnother line.",
                                   "Another line.\nA third.", "One line.\nAnother line.\nA third.")


def test_excerpts_replace_a_share_and_leave_every_other_document_as_it_was():
    whole = list(compose(ComposeConfig(n=400, seed=7, excerpt_share=0)))
    mixed = list(compose(ComposeConfig(n=400, seed=7, excerpt_share=0.2)))
    cut = [i for i, doc in enumerate(mixed) if "excerpt" in doc.meta["features"]]
    assert 40 <= len(cut) <= 120
    for i, (a, b) in enumerate(zip(whole, mixed)):
        if i in cut:
            assert b.text in a.text and len(b.text) < len(a.text) or b.text == a.text
            assert {s.value for s in b.spans} <= {s.value for s in a.spans}
        else:
            assert (a.text, a.spans, a.meta) == (b.text, b.spans, b.meta)
    bare = [d for d in mixed if {"STREET_ADDRESS"} <= {s.label for s in d.spans} and
            "NAME" not in {s.label for s in d.spans}]
    assert bare


@pytest.mark.parametrize("share", [-0.1, 1.5])
def test_a_share_outside_zero_to_one_is_refused(share):
    with pytest.raises(PiilabError, match="excerpt share"):
        ComposeConfig(excerpt_share=share)


def test_a_build_takes_its_share_of_excerpts_from_compose_only(tmp_path):
    card = build_dataset(BuildConfig(out=str(tmp_path), synthetic=120, generator="compose", excerpts=0.5, seed=3))
    assert "0.5 of them as excerpts" in card["sources"]["compose"]["files"][0]
    records = list(read_records(tmp_path / "train.jsonl"))
    cut = [r for r in records if "excerpt" in r["meta"]["features"]]
    assert 20 < len(cut) < len(records) - 20
    with pytest.raises(PiilabError, match="--excerpts"):
        BuildConfig(out=str(tmp_path / "t"), synthetic=10, excerpts=0.2)  # the templates generator
