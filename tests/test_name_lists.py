"""Lists of people, one to a line: the lines the model skipped are added where it named most."""

from __future__ import annotations

import pytest

from piilab import shapes
from piilab.name_lists import listed_names

CREDITS = ("This is an incomplete list of people who have worked on it.  If you are missing,\n"
           "please send mail to the maintainers!\n\n"
           "Adam Sampson\nBenjamin Otte <otte@example.com>\nKarl Koehler (Arabic shaper)\n"
           "Jean-Luc Rémy           Original version of agm.c\nCarl Worth\nCraig Keogh\n")
NAMES = ["Adam Sampson", "Benjamin Otte", "Karl Koehler", "Jean-Luc Rémy", "Carl Worth", "Craig Keogh"]


def named(text: str, values: list[str]) -> list[tuple[int, int, str]]:
    return [(text.index(v), text.index(v) + len(v), "NAME") for v in values]


def test_a_lists_skipped_lines_are_added_where_the_model_named_half_of_them():
    model = named(CREDITS, NAMES[:3])
    assert [CREDITS[a:b] for a, b, _ in listed_names(CREDITS, model)] == NAMES[3:]
    assert shapes.combine(CREDITS, model, shapes.EXTRACT_MODES) == sorted(
        named(CREDITS, NAMES) + [(CREDITS.index("otte@"), CREDITS.index(">"), "EMAIL")])


def test_fewer_than_half_named_is_not_a_list_of_people():
    assert listed_names(CREDITS, named(CREDITS, NAMES[:2])) == []


@pytest.mark.parametrize("other_line", [
    "See the AUTHORS file",  # a sentence's words
    "Debian Python Team",  # a collective
    "Contributors:",  # a heading
    "GnuTLS 3.8.1",
])
def test_a_block_with_a_line_that_is_no_name_is_not_a_list(other_line):
    text = CREDITS.replace("Carl Worth", other_line)
    names = [n for n in NAMES if n != "Carl Worth"]
    assert listed_names(text, named(text, names[:3])) == []


def test_a_short_block_and_blank_lines_between_names_are_no_list():
    short = "Adam Sampson\nCarl Worth\nCraig Keogh\n"
    assert listed_names(short, named(short, ["Adam Sampson", "Carl Worth"])) == []
    spread = "\n\n".join(NAMES[:5])  # every name a block of its own
    assert listed_names(spread, named(spread, NAMES[:4])) == []


def test_lists_is_a_default_mode_that_can_be_left_out():
    model = named(CREDITS, NAMES[:3])
    assert "lists" in shapes.EXTRACT_MODES
    assert shapes.combine(CREDITS, model, ("extend", "check", "mailbox")) == sorted(model)
