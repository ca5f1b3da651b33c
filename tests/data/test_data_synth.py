"""Synthetic documents: exact spans, every label, no-PII texts, hard negatives, reproducible."""

from __future__ import annotations

import random
import time
from collections import Counter

import pytest

from piilab.data.labels import DEFAULT_LABELS
from piilab.data.synth import GENRES, TEMPLATES, SynthConfig, synthesize, template_ids
from piilab.errors import PiilabError


@pytest.fixture(scope="module")
def docs():
    return list(synthesize(SynthConfig(n=600, seed=3)))


def test_spans_are_exact_by_construction(docs):
    for doc in docs:
        assert all(doc.text[s.start:s.end] == s.value and s.value == s.value.strip() for s in doc.spans)
        assert all(a.end <= b.start for a, b in zip(doc.spans, doc.spans[1:]))


def test_every_label_genre_and_template_kind_occurs(docs):
    assert set(Counter(s.label for d in docs for s in d.spans)) == set(DEFAULT_LABELS)
    assert {d.meta["genre"] for d in docs} == set(GENRES)
    assert all(d.meta["template_id"] in TEMPLATES for d in docs)
    assert len({d.meta["locale"] for d in docs}) >= 4
    no_pii = [d for d in docs if not d.spans]
    assert 0.1 < len(no_pii) / len(docs) < 0.4


def test_hard_negatives_are_in_the_text_but_never_spans(docs):
    kinds = Counter()
    for doc in docs:
        for negative in doc.meta["hard_negatives"]:
            kinds[negative["kind"]] += 1
            assert negative["value"] in doc.text
            assert all(negative["value"] != s.value for s in doc.spans)
    assert {"cited author", "instructor", "public URL", "order number"} <= set(kinds)


def test_passages_are_short(docs):
    words = sorted(len(d.text.split()) for d in docs)
    assert words[len(words) // 10] >= 10 and words[-1] <= 80
    assert 15 <= words[len(words) // 2] <= 70


def test_same_seed_same_documents_other_seed_others():
    a = [(d.text, d.spans) for d in synthesize(SynthConfig(n=40, seed=7))]
    b = [(d.text, d.spans) for d in synthesize(SynthConfig(n=40, seed=7))]
    c = [(d.text, d.spans) for d in synthesize(SynthConfig(n=40, seed=8))]
    assert a == b and a != c


def test_two_thousand_documents_take_well_under_a_few_seconds():
    start = time.process_time()
    n = sum(1 for _ in synthesize(SynthConfig(n=2000, seed=1)))
    assert n == 2000
    assert time.process_time() - start < 5  # ~1 s here, including Faker's locale set-up


def test_genres_and_templates_restrict_the_choice():
    docs = list(synthesize(SynthConfig(n=30, seed=0, genres=["chat"])))
    assert {d.meta["template_id"] for d in docs} <= set(template_ids(["chat"]))
    docs = list(synthesize(SynthConfig(n=5, seed=0, templates=["form-01"])))
    assert {d.meta["template_id"] for d in docs} == {"form-01"}
    with pytest.raises(PiilabError, match="unknown genre"):
        SynthConfig(genres=["poetry"])
    with pytest.raises(PiilabError, match="Faker locale"):
        list(synthesize(SynthConfig(n=1, locales=["xx_XX"])))


def test_choices_give_one_template_several_surface_forms_with_exact_spans():
    docs = list(synthesize(SynthConfig(n=200, seed=2, templates=["form-11"])))
    field_names = {d.text.splitlines()[2].split(":")[0] for d in docs}
    assert field_names == {"ID", "No.", "Member no.", "Card number"}
    for doc in docs:
        assert "[" not in doc.text and "|" not in doc.text
        assert [s.label for s in doc.spans] == ["NAME", "ID_NUM"]
        assert all(doc.text[s.start:s.end] == s.value for s in doc.spans)


def test_an_empty_alternative_leaves_nothing_behind():
    from piilab.data.synth import _choose

    texts = {_choose("a[ b|] c", random.Random(seed)) for seed in range(20)}
    assert texts == {"a b c", "a c"}
