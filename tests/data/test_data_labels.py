"""The label crosswalk: every source label named in formats.md, merging, restriction, counting."""

from __future__ import annotations

import pytest

from piilab.data.labels import (
    DEFAULT_LABELS,
    KEPT,
    OUTSIDE,
    PART_DROPPED,
    UNKNOWN,
    UNMAPPED,
    LabelTally,
    apply_crosswalk,
    load_crosswalk,
    resolve_labels,
)
from piilab.data.records import Span
from piilab.errors import PiilabError

# Every label name formats.md lists for a source, with where it must go.
FORMATS_MD = {
    "kaggle": {"NAME_STUDENT": "NAME", "EMAIL": "EMAIL", "USERNAME": "USERNAME", "ID_NUM": "ID_NUM",
               "PHONE_NUM": "PHONE_NUM", "URL_PERSONAL": "URL_PERSONAL", "STREET_ADDRESS": "STREET_ADDRESS"},
    "ai4privacy": {"FIRSTNAME": "NAME", "LASTNAME": "NAME", "MIDDLENAME": "NAME", "GIVENNAME1": "NAME",
                   "GIVENNAME2": "NAME", "LASTNAME1": "NAME", "LASTNAME2": "NAME", "LASTNAME3": "NAME",
                   "GIVENNAME": "NAME", "SURNAME": "NAME", "PHONENUMBER": "PHONE_NUM", "TEL": "PHONE_NUM",
                   "TELEPHONENUM": "PHONE_NUM", "SSN": "ID_NUM", "SOCIALNUMBER": "ID_NUM", "SOCIALNUM": "ID_NUM",
                   "BUILDINGNUMBER": "STREET_ADDRESS", "BUILDING": "STREET_ADDRESS", "BUILDINGNUM": "STREET_ADDRESS",
                   "IDCARD": "ID_NUM", "PASSPORT": "ID_NUM", "DRIVERLICENSE": "ID_NUM", "IDCARDNUM": "ID_NUM",
                   "PASSPORTNUM": "ID_NUM", "DRIVERLICENSENUM": "ID_NUM", "ACCOUNTNUM": "ID_NUM", "TAXNUM": "ID_NUM",
                   "CREDITCARDNUMBER": "ID_NUM", "EMAIL": "EMAIL", "USERNAME": "USERNAME", "URL": "URL_PERSONAL",
                   "STREET": "STREET_ADDRESS", "CITY": "STREET_ADDRESS", "ZIPCODE": "STREET_ADDRESS",
                   "DATEOFBIRTH": None},
    "presidio": {"PERSON": "NAME", "EMAIL_ADDRESS": "EMAIL", "PHONE_NUMBER": "PHONE_NUM",
                 "STREET_ADDRESS": "STREET_ADDRESS", "US_SSN": "ID_NUM", "US_DRIVER_LICENSE": "ID_NUM",
                 "CREDIT_CARD": "ID_NUM", "IBAN_CODE": "ID_NUM", "DOMAIN_NAME": None, "IP_ADDRESS": None,
                 "DATE_TIME": None, "GPE": None, "ORGANIZATION": None, "TITLE": None, "AGE": None, "NRP": None,
                 "ZIP_CODE": "STREET_ADDRESS"},
}


@pytest.fixture(scope="module")
def crosswalk():
    return load_crosswalk()


@pytest.mark.parametrize("source, label, target",
                         [(s, label, t) for s, labels in FORMATS_MD.items() for label, t in labels.items()])
def test_every_formats_md_label_is_mapped_as_documented(crosswalk, source, label, target):
    rule = crosswalk.rule(label)
    assert rule is not None, f"{source} label {label} missing from the crosswalk"
    assert rule.canonical == target


def spans_of(text, *pieces):
    """Spans for (substring, label) pairs, found left to right."""
    out, at = [], 0
    for value, label in pieces:
        start = text.index(value, at)
        out.append(Span.of(text, start, start + len(value), label))
        at = start + len(value)
    return out


@pytest.mark.parametrize("text, pieces, expected", [
    ("Dear Georg Hohenstein,", [("Georg", "GIVENNAME"), ("Hohenstein", "SURNAME")], [("Georg Hohenstein", "NAME")]),
    ("at 42 Elm Row, Leeds LS1 4AB today",
     [("42", "BUILDINGNUM"), ("Elm Row", "STREET"), ("Leeds", "CITY"), ("LS1 4AB", "ZIPCODE")],
     [("42 Elm Row, Leeds LS1 4AB", "STREET_ADDRESS")]),
    ("77 Harbor Road\nPortland", [("77 Harbor Road", "STREET"), ("Portland", "CITY")],
     [("77 Harbor Road\nPortland", "STREET_ADDRESS")]),
    # Two names on two lines are two people; two emails next to each other are two emails.
    ("Ana\nBo", [("Ana", "GIVENNAME"), ("Bo", "GIVENNAME")], [("Ana", "NAME"), ("Bo", "NAME")]),
    ("a@x.org b@y.org", [("a@x.org", "EMAIL"), ("b@y.org", "EMAIL")], [("a@x.org", "EMAIL"), ("b@y.org", "EMAIL")]),
    # A city alone is not a street address; a name and a date are not merged.
    ("seen in Bristol", [("Bristol", "CITY")], []),
    ("Lena on 12.03.", [("Lena", "GIVENNAME"), ("12.03.", "DATE")], [("Lena", "NAME")]),
])
def test_crosswalk_maps_and_merges(crosswalk, text, pieces, expected):
    out = apply_crosswalk(text, spans_of(text, *pieces), crosswalk, DEFAULT_LABELS)
    assert [(s.value, s.label) for s in out] == expected
    assert all(text[s.start:s.end] == s.value for s in out)


def test_every_span_is_counted_under_one_outcome(crosswalk):
    text = "Lena Vogt in Bristol on Monday, user lv9, code XYZ"
    spans = spans_of(text, ("Lena", "GIVENNAME"), ("Vogt", "SURNAME"), ("Bristol", "CITY"),
                     ("Monday", "DATE"), ("lv9", "USERNAME"), ("XYZ", "MYSTERY"))
    tally = LabelTally()
    out = apply_crosswalk(text, spans, crosswalk, ["NAME"], tally)
    assert [s.value for s in out] == ["Lena Vogt"]
    assert tally.counts == {("GIVENNAME", KEPT): 1, ("SURNAME", KEPT): 1, ("CITY", PART_DROPPED): 1,
                            ("DATE", UNMAPPED): 1, ("USERNAME", OUTSIDE): 1, ("MYSTERY", UNKNOWN): 1}
    assert sum(tally.counts.values()) == len(spans)
    coverage = tally.coverage(crosswalk)
    assert coverage["MYSTERY"] == {"count": 1, "to": None, "outcomes": {UNKNOWN: 1}}
    assert coverage["CITY"]["to"] == "STREET_ADDRESS (as part of an adjacent span)"


def test_user_crosswalk_overrides_rows_and_adds_labels(tmp_path):
    csv = tmp_path / "mine.csv"
    csv.write_text("source_label,canonical,when\nIP_ADDRESS,IP_ADDRESS,always\nCITY,,\n")
    crosswalk = load_crosswalk(csv)
    assert crosswalk.rule("ip_address").canonical == "IP_ADDRESS"
    assert crosswalk.rule("CITY").canonical is None
    assert crosswalk.rule("GIVENNAME").canonical == "NAME"  # shipped rows stay
    assert resolve_labels(["name", "IP_ADDRESS"], crosswalk) == ("NAME", "IP_ADDRESS")
    text = "from 10.0.0.1"
    out = apply_crosswalk(text, spans_of(text, ("10.0.0.1", "IP_ADDRESS")), crosswalk, ["IP_ADDRESS"])
    assert [(s.value, s.label) for s in out] == [("10.0.0.1", "IP_ADDRESS")]


@pytest.mark.parametrize("body, message", [
    ("label,target\nA,B\n", "columns"),
    ("source_label,canonical,when\nA,NAME,sometimes\n", "line 2"),
    ("source_label,canonical\nA,not a label\n", "line 2"),
])
def test_bad_crosswalk_is_a_one_line_error(tmp_path, body, message):
    csv = tmp_path / "bad.csv"
    csv.write_text(body)
    with pytest.raises(PiilabError, match=message):
        load_crosswalk(csv)


def test_a_crosswalk_saved_with_a_byte_order_mark_is_read(tmp_path):
    csv = tmp_path / "excel.csv"
    csv.write_bytes(b"\xef\xbb\xbfsource_label,canonical\r\nNOTALABEL,NAME\r\n")
    assert load_crosswalk(csv).rule("NOTALABEL").canonical == "NAME"


def test_an_unreadable_crosswalk_is_a_one_line_error_naming_it(tmp_path):
    latin1 = tmp_path / "latin1.csv"
    latin1.write_bytes(b"source_label,canonical\nNOTALABEL,NAM\xe9\n")
    with pytest.raises(PiilabError, match=r"latin1.csv: line 2: not UTF-8"):
        load_crosswalk(latin1)
    with pytest.raises(PiilabError, match=f"{tmp_path}: is a directory"):
        load_crosswalk(tmp_path)
    with pytest.raises(PiilabError, match="crosswalk file not found"):
        load_crosswalk(tmp_path / "missing.csv")


def test_unknown_label_in_label_set_is_an_error(crosswalk):
    with pytest.raises(PiilabError, match="unknown label"):
        resolve_labels(["NAME", "SHOE_SIZE"], crosswalk)
    assert resolve_labels(None, crosswalk) == DEFAULT_LABELS
