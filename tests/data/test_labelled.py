"""Labelled documents for scoring (piilab.data.labelled): whole, every one kept, with the spans a
build gives the same text."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from piilab.data import BuildConfig, build_dataset
from piilab.data.labelled import labelled_documents
from piilab.errors import PiilabError

FIXTURES = Path(__file__).parent / "fixtures"
SOURCES = [
    f"kaggle:{FIXTURES / 'kaggle_train.json'}", f"ai4privacy:{FIXTURES / 'ai4privacy_*.jsonl'}",
    str(FIXTURES / "presidio_v2.json"), f"presidio:{FIXTURES / 'presidio_v1.json'}",
    f"conll:{FIXTURES / 'conll_bio.conll'}", f"spans:{FIXTURES / 'spans.jsonl'}",
]


def spans_of(doc) -> list[dict]:
    return [{"start": s.start, "end": s.end, "label": s.label, "value": s.value} for s in doc.spans]


def write_spans(path: Path, rows: list[tuple[str, list[tuple[str, str]]]]) -> Path:
    """A spans-format file: each row's text with its (value, label) spans."""
    with path.open("w", encoding="utf-8") as f:
        for n, (text, items) in enumerate(rows):
            spans = [{"start": text.index(v), "end": text.index(v) + len(v), "label": label, "value": v}
                     for v, label in items]
            f.write(json.dumps({"id": f"r{n}", "text": text, "spans": spans}) + "\n")
    return path


def test_documents_have_the_spans_a_build_gives_their_text(tmp_path):
    tallies = {}
    docs = list(labelled_documents(SOURCES, tallies))
    build_dataset(BuildConfig(out=str(tmp_path / "built"), sources=SOURCES, test_size=0.0))
    built = {}
    for line in (tmp_path / "built" / "train.jsonl").read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        built[record["text"]] = record["spans"]
    assert {"kaggle", "ai4privacy", "presidio", "conll", "spans"} <= set(tallies)
    compared = [doc for doc in docs if doc.text in built]
    assert len(compared) >= 10
    assert all(spans_of(doc) == built[doc.text] for doc in compared)
    labels = {s.label for doc in docs for s in doc.spans}
    assert labels <= {"NAME", "EMAIL", "USERNAME", "ID_NUM", "PHONE_NUM", "URL_PERSONAL", "STREET_ADDRESS"}
    assert {"NAME", "EMAIL", "PHONE_NUM", "STREET_ADDRESS"} <= labels
    # nothing lost: what was read was kept or counted as left out
    assert all(t.read == t.written + sum(t.skipped.values()) for t in tallies.values())


def test_every_document_is_kept_duplicates_too(tmp_path):
    path = write_spans(tmp_path / "twice.jsonl", [("Mail Ana Lima today.", [("Ana Lima", "NAME")])] * 3)
    docs = list(labelled_documents([f"spans:{path}"], {}))
    assert [d.text for d in docs] == ["Mail Ana Lima today."] * 3


def test_a_label_outside_the_crosswalk_leaves_the_document_out_counted(tmp_path):
    path = write_spans(tmp_path / "odd.jsonl", [
        ("Call Bo Ek at 555 0100.", [("Bo Ek", "PERSON"), ("555 0100", "PHONE_NUMBER")]),
        ("Badge 7731 for Li Na.", [("7731", "BADGE_NO"), ("Li Na", "PERSON")]),
        ("Seen in Paris on Monday.", [("Paris", "GPE"), ("Monday", "DATE_TIME")]),
    ])
    tallies = {}
    docs = list(labelled_documents([f"spans:{path}"], tallies))
    assert [d.text for d in docs] == ["Call Bo Ek at 555 0100.", "Seen in Paris on Monday."]
    assert [s.label for s in docs[0].spans] == ["NAME", "PHONE_NUM"]
    assert docs[1].spans == []  # mapped to nothing: a text without PII of the seven
    assert tallies["spans"].skipped == {"label BADGE_NO not in the crosswalk": 1}
    with pytest.raises(PiilabError, match=r"odd.jsonl: record .*r1.*BADGE_NO"):
        list(labelled_documents([f"spans:{path}"], {}, strict=True))
    # a crosswalk of the user's own maps it
    walk = tmp_path / "walk.csv"
    walk.write_text("source_label,canonical\nBADGE_NO,ID_NUM\n", encoding="utf-8")
    docs = list(labelled_documents([f"spans:{path}"], {}, crosswalk=str(walk)))
    assert [s.label for s in docs[1].spans] == ["ID_NUM", "NAME"]


def test_rows_without_labels_are_counted_not_scored():
    tallies = {}
    assert list(labelled_documents([f"alpaca:{FIXTURES / 'alpaca.json'}"], tallies)) == []
    tally = tallies["alpaca"]
    assert tally.read > 0 and tally.skipped["unlabelled document (nothing to score against)"] == tally.read


def test_languages_select_as_a_build_does():
    source = [f"ai4privacy:{FIXTURES / 'ai4privacy_*.jsonl'}"]
    everything = list(labelled_documents(source, {}))
    tallies = {}
    english = list(labelled_documents(source, tallies, languages=["en"]))
    german = list(labelled_documents(source, {}, languages=["de"]))
    assert len(english) + len(german) == len(everything) and german
    assert all(d.meta["language"] in ("en", "English") for d in english)
    assert tallies["ai4privacy"].skipped["language not selected"] == len(german)
