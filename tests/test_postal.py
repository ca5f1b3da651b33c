"""Postal addresses found by their shape (piilab.postal) and the `postal` validator (piilab.shapes)."""

import random

import pytest

from piilab import shapes
from piilab.data.people import Locale
from piilab.postal import postal_addresses


def found(text: str) -> list[str]:
    return [text[start:end] for start, end, _ in postal_addresses(text)]


@pytest.mark.parametrize("address", [
    "Hauptstraße 48a\n71032 Böblingen",
    "12, rue des Lilas\n69003 Lyon",
    "ul. Witosa 984\n48-347 Mysłowice",
    "Piazza Benedetto, 77\n40050 Vigo Di Cadore (AO)",
    "Storgatan 12 B\n753 20 Uppsala",
    "Prinsengracht 263-1\n1016 GV Amsterdam",
    "2250 Westheimer Rd, Apt 9B\nHouston, TX 77098",
    "1210-B N MAIN ST SPOKANE WA 99201",
    "14 Carrow Road, Norwich NR1 1HS",
    "41 Gloucester Place\nLondon\nW1U 8JH",
    "Flat 3\n41 Gloucester Place\nLondon W1U 8JH",
    "Level 4 2 Christopher Lane\nGoldenstad SA 7118",
    "17 Kauri Street\nPonsonby\nAuckland 1011",
    "Jan Steenstraat 14\nWillemstad",
])
def test_an_address_block_or_line_is_found_whole(address):
    assert found(address) == [address]


def test_the_country_line_a_caption_and_what_follows_the_block_stay_out():
    text = "Ship to:\nAddress: Lindenweg 3\n79100 Freiburg\nGermany\n\nThanks, see you soon"
    assert found(text) == ["Lindenweg 3\n79100 Freiburg"]
    assert found("88 Collins Street, Melbourne VIC 3000, Australia") == ["88 Collins Street, Melbourne VIC 3000"]
    text = "Hauptstraße 5\n80331 München\nMüller Bau GmbH\nTel. 089 1234"
    assert found(text) == ["Hauptstraße 5\n80331 München"]
    assert found("12 Elm Street\nSpringfield, IL 62704\nJohn Smith") == ["12 Elm Street\nSpringfield, IL 62704"]
    assert found("Jan Steenstraat 14\nWillemstad\nDear Sir,\nThank you") == []  # no postcode, not alone


@pytest.mark.parametrize("text", [
    "We met at 14 Carrow Road, Norwich NR1 1HS last year.",  # in a sentence: the model's to judge
    "14 Carrow Road, Norwich NR1 1HS is where we met last year.",
    "Meine Nummer ist 04321 98765",
    "Upper Street 7",  # a street with no town after it
    "Release 3\n2024 Roadmap",
    "Friends of the Library 120 Elm Avenue, Springfield, IL 62704",  # a number ends no such street
    "8 Riverside Shopping Centre\nLeeds LS1 4AP",  # premises, not a street
    "Scala 24\n40050 Vigo Di Cadore (AO)",  # a unit's line, not a street's
])
def test_no_address_where_the_shape_is_not_an_address_alone(text):
    assert found(text) == []


def test_most_of_the_generators_address_blocks_are_found_whole():
    """The generator's own blocks (frames/locales.yaml) in every country it composes for; Faker's
    odd streets ("Moore Springs" under "Flat 81", a street without a number) are missed."""
    import yaml
    from importlib.resources import files

    codes = list(yaml.safe_load(files("piilab.data.frames").joinpath("locales.yaml").read_text()))
    exact = total = 0
    for code in codes:
        locale, rng = Locale(code, 7), random.Random(3)
        for _ in range(10):
            lines = locale.address_lines(rng)
            gold = "\n".join(lines[:-1] if lines[-1] == locale.spec["country"] else lines)
            total += 1
            exact += found("\n".join(lines)) == [gold]
    assert exact / total >= 0.85, f"{exact} of {total}"


def test_postal_adds_an_address_only_where_no_organisation_heads_it():
    block = "Dorpsstraat 12\n2000 Antwerpen"
    alone, under_caption = block, "Ship to:\n" + block
    org = "Bakkerij Peeters\n" + block
    premises = "Peeters Bakery\n" + block  # a noun of a place of business
    person = "Anna Peeters\n" + block
    for text in (alone, under_caption):
        assert shapes.postal(text, []) == [(text.index("D"), len(text), "STREET_ADDRESS")]
    assert shapes.postal(org, []) == []  # a line where nothing was found heads it
    assert shapes.postal(premises, [(0, 14, "NAME")]) == [(0, 14, "NAME")]
    name = (0, 12, "NAME")  # the model found the line above a person's name
    assert shapes.postal(person, [name]) == [name, (13, len(person), "STREET_ADDRESS")]


def test_postal_does_not_double_an_address_the_model_found():
    text = "Anna Peeters\nDorpsstraat 12\n2000 Antwerpen"
    model = [(0, 12, "NAME"), (13, 24, "STREET_ADDRESS")]  # cut short: the model's stays
    assert shapes.postal(text, model) == model


def test_postal_is_asked_for_by_name_not_one_of_extracts_defaults():
    text = "Dorpsstraat 12\n2000 Antwerpen"
    assert "postal" in shapes.MODES and "postal" not in shapes.EXTRACT_MODES
    assert shapes.combine(text, [], shapes.EXTRACT_MODES) == []
    assert shapes.combine(text, [], shapes.MODES) == [(0, len(text), "STREET_ADDRESS")]


def test_modes_as_a_user_writes_them():
    assert shapes.modes_from("none") == ()
    assert shapes.modes_from("check, postal") == ("check", "postal")
    assert shapes.modes_from("+postal") == shapes.EXTRACT_MODES + ("postal",)
    assert shapes.modes_from("+check") == shapes.EXTRACT_MODES
