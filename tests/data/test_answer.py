import pytest

from piilab.data.answer import (
    format_answer,
    normalize_value,
    parse_answer,
    parse_answer_counted,
)


def test_format_lists_each_item_once_in_order():
    items = [("Jane Doe", "NAME"), ("jane@x.org", "EMAIL"), ("Jane Doe", "NAME")]
    assert format_answer(items) == "Jane Doe (NAME)\njane@x.org (EMAIL)"


def test_format_empty_is_none():
    assert format_answer([]) == "None"


@pytest.mark.parametrize(
    "items",
    [
        [("Jane Doe", "NAME")],
        [("(555) 010-2000", "PHONE_NUM"), ("12 Oak St, Springfield", "STREET_ADDRESS")],
        [("jo_42", "USERNAME"), ("https://x.org/~jo", "URL_PERSONAL")],
    ],
)
def test_parse_inverts_format(items):
    assert parse_answer(format_answer(items)) == items


@pytest.mark.parametrize(
    "text, items, malformed",
    [
        ("None", [], 0),
        ("", [], 0),
        ("Jane (NAME)\ngarbage line\n\n- bob@x.org (EMAIL)", [("Jane", "NAME"), ("bob@x.org", "EMAIL")], 1),
        ("(NAME)", [], 1),
        ("Jane Doe (name)", [], 1),
        ("1. Jane (NAME)", [("Jane", "NAME")], 0),
        ("55) (PHONE_NUM)", [("55)", "PHONE_NUM")], 0),  # a value that looks like a bullet
    ],
)
def test_parse_is_total_and_counts_malformed(text, items, malformed):
    assert parse_answer_counted(text) == (items, malformed)


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("  Jane   DOE ", "jane doe"),
        ("\u201cJane Doe.\u201d", "jane doe"),
        ("ＪＡＮＥ", "jane"),  # full-width forms fold under NFKC
        ("Straße", "strasse"),
        ("jane.doe@x.org.", "jane.doe@x.org"),
    ],
)
def test_normalize_value(raw, expected):
    assert normalize_value(raw) == expected


def test_atomic_write_keeps_the_usual_file_mode(tmp_path):
    import os

    from piilab.io import write_json

    write_json(tmp_path / "x.json", {"a": 1})
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "x.json").stat().st_mode & 0o777 == 0o666 & ~umask


def test_a_label_outside_the_prompts_set_is_malformed_when_the_set_is_given():
    answer = "Jane (NAME)\n078-05-1120 (SSN)\nkev (USERNAME)"
    assert parse_answer_counted(answer) == ([("Jane", "NAME"), ("078-05-1120", "SSN"),
                                             ("kev", "USERNAME")], 0)
    assert parse_answer_counted(answer, {"NAME", "USERNAME"}) == (
        [("Jane", "NAME"), ("kev", "USERNAME")], 1)
    assert parse_answer(answer, ("NAME",)) == [("Jane", "NAME")]
