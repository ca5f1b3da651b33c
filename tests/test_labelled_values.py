"""Values a label before them names (piilab.labelled_values): identity numbers after an identity
label and phone numbers after a phone phrase, and what `check` and `complete` make of them."""

from __future__ import annotations

import pytest

from piilab import shapes
from piilab.labelled_values import labelled_ids, labelled_phones


def values(text: str) -> list[str]:
    return [text[start:end] for start, end, _ in labelled_ids(text)]


@pytest.mark.parametrize("text, expected", [
    ("Customer: Hannah Whitfield\nAccount no.: ACC-55820193\n", "ACC-55820193"),
    ("NHS number: 485 777 3456\n", "485 777 3456"),
    ("Kundennummer: K-4410938", "K-4410938"),
    ("Steuernummer: 06149/12345\n", "06149/12345"),
    ("Codice fiscale: RMNFNC90A41A944P\n", "RMNFNC90A41A944P"),
    ("n° de sécurité sociale 1 85 05 78 006 084 36.", "1 85 05 78 006 084 36"),
    ("Neem je BSN (111222333) mee.", "111222333"),
    ("la tarjeta asociada a mi CUIL 20-31456789-3.", "20-31456789-3"),
    ("Mi código de estudiante es 201912345.", "201912345"),
    ("Re: Social Insurance Number 046 454 286\n", "046 454 286"),
    ("PPSN: 1234567TA\n", "1234567TA"),
    ("Student ID: 2019-12345-B", "2019-12345-B"),
    ("Passport No. X1234567 issued in 2019", "X1234567"),
])
def test_a_number_after_an_identity_label_is_found_whatever_its_shape(text, expected):
    assert values(text) == [expected]


@pytest.mark.parametrize("text", [
    "sin 2000 euros de fianza",           # Spanish "without": abbreviations count in capitals only
    "see RFC 2822 for the header",        # not an identity label
    "account: 2 items left",              # a generic word needs its "number"
    "ID 2024 roadmap",
    "Order no. 12345",                    # a business's reference
    "ID number: 2024-01-05",              # a date, refused by is_id_number
    "Kundennummer: 123",                  # fewer than four digits
    "NIF: 123456789abc",                  # the value would end inside a word
    "O meu NIF continua 123456789",       # a word between the label and the number
])
def test_no_number_without_an_identity_label_right_before_it(text):
    assert values(text) == []


def test_check_relabels_a_phone_number_the_label_says_is_an_id():
    text = "NHS number: 485 777 3456\nTel.: 0161 496 0753"
    nhs, tel = (12, 24, "PHONE_NUM"), (31, 44, "PHONE_NUM")
    assert shapes.check(text, [nhs, tel]) == [(12, 24, "ID_NUM"), tel]


def test_complete_adds_a_labelled_id_the_model_missed_but_not_over_its_items():
    text = "Kundennummer: K-4410938, Mitgliedsnummer: M-55012"
    assert shapes.complete(text, []) == [(14, 23, "ID_NUM"), (42, 49, "ID_NUM")]
    model = [(14, 23, "USERNAME")]
    assert shapes.complete(text, model) == [(14, 23, "USERNAME"), (42, 49, "ID_NUM")]


def test_a_national_numbers_own_shape_decides_its_extent():
    text = "NINO AB 12 34 56 C"  # the label's value stops at " C"; the NINO's shape holds it
    assert [text[a:b] for a, b, _ in shapes.complete(text, [])] == ["AB 12 34 56 C"]


def test_check_drops_a_name_that_is_an_identity_label_itself():
    text = "Steuernummer: 06149/12345\nNIF: 123456789\nNoor Bakker: ik!\nRut Andersson"
    names = [(0, 12, "NAME"), (26, 29, "NAME"), (41, 52, "NAME"), (58, 71, "NAME")]
    kept = [text[a:b] for a, b, label in shapes.check(text, names) if label == "NAME"]
    assert kept == ["Noor Bakker", "Rut Andersson"]


@pytest.mark.parametrize("text, expected", [
    ("Ciao! Il mio numero è 347 123 4567.", "347 123 4567"),
    ("Hoi, m'n nummer is 06-28471936", "06-28471936"),
    ("Mi móvil es el 612 345 678.", "612 345 678"),
    ("su número es 55 1234 5678", "55 1234 5678"),
    ("se non c'è nessuno chiamami al 347 123 4567", "347 123 4567"),
    ("Je reste joignable au 06 12 34 56 78.", "06 12 34 56 78"),
    ("Or call me on 0161 496 0753 after six.", "0161 496 0753"),
])
def test_a_number_said_to_be_ones_own_or_to_call_is_a_phone_number(text, expected):
    assert [text[a:b] for a, b, _ in labelled_phones(text)] == [expected]


@pytest.mark.parametrize("text", [
    "The order number is 2024-118734",   # no possessive: an order's number
    "my number is 7 in the queue",        # not a phone number's shape
    "call me at 9 tonight",
])
def test_no_phone_number_without_a_phone_phrase_and_shape(text):
    assert labelled_phones(text) == []
