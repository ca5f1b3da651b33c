"""vCards read by their fields (piilab.vcards), and what `check` and `complete` make of them."""

from __future__ import annotations

from piilab import shapes
from piilab.vcards import card_only_values, messenger_handles

CARD = ("BEGIN:VCARD\nVERSION:3.0\nUID:issue251part1\nFN:Gail Dartmouth\n"
        "EMAIL:gdartmouth@hotmail.com\nX-ICQ:123456789\nitem1.X-SKYPE;TYPE=HOME:gail.d\nEND:VCARD\n")


def at(text: str, value: str) -> tuple[int, int]:
    start = text.index(value)
    return start, start + len(value)


def test_the_fields_about_the_card_are_no_ones_data():
    assert card_only_values(CARD) == [at(CARD, "3.0"), at(CARD, "issue251part1")]


def test_messenger_fields_hold_usernames():
    assert messenger_handles(CARD) == [(*at(CARD, "123456789"), "USERNAME"), (*at(CARD, "gail.d"), "USERNAME")]


def test_a_text_that_is_not_a_card_is_not_read_as_one():
    text = "Notes\nUID:issue251part1\nX-ICQ:123456789\n"
    assert card_only_values(text) == [] and messenger_handles(text) == []


def test_check_drops_a_uid_and_relabels_an_icq_number():
    uid, icq = (*at(CARD, "issue251part1"), "USERNAME"), (*at(CARD, "123456789"), "PHONE_NUM")
    assert shapes.check(CARD, [uid, icq]) == [(*at(CARD, "123456789"), "USERNAME")]


def test_complete_adds_the_handles_the_model_missed():
    added = [s for s in shapes.complete(CARD, []) if s[2] == "USERNAME"]
    assert added == [(*at(CARD, "123456789"), "USERNAME"), (*at(CARD, "gail.d"), "USERNAME")]


def test_the_n_fields_parts_are_names_but_not_its_titles():
    card = "BEGIN:VCARD\nVERSION:3.0\nN:Doe;John;Richter\\, James;Mr.;Sr.\nEND:VCARD\n"
    names = [card[a:b] for a, b, label in shapes.complete(card, []) if label == "NAME"]
    assert names == ["Doe", "John", "Richter\\, James"]


def test_a_property_name_is_never_a_value():
    calendar = "BEGIN:VCALENDAR\nBEGIN:VEVENT\nRRULE:FREQ=WEEKLY\nEND:VEVENT\nEND:VCALENDAR\n"
    rrule = (*at(calendar, "RRULE"), "NAME")
    assert shapes.check(calendar, [rrule]) == []
    assert shapes.check("RRULE is what the team calls him", [(0, 5, "NAME")]) == [(0, 5, "NAME")]


def test_apples_field_labels_are_no_ones_data():
    card = "BEGIN:VCARD\nitem4.X-ABLabel:_$!<Anniversary>!$_\nEND:VCARD\n"
    assert card_only_values(card) == [at(card, "_$!<Anniversary>!$_")]
