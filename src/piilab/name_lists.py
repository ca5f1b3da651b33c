"""Lists of people, one to a line: the lines the model skipped.

Credits files, attendee lists and signature blocks list people one to a line, the name alone or
followed by an address, a role or a column ("Adam Sampson", "Benjamin Otte <otte@redhat.com>",
"Karl Koehler (Arabic shaper)", "Jean-Luc Rémy       Original version of agm.c"). On a long
list the model names most lines and skips a few. Where every line of a block (the lines between
blank lines) starts with a name's shape and the model found a name in at least half of them,
the lines it skipped are names too: a list does not change what it lists halfway through.
"""

from __future__ import annotations

import re

from piilab.addresses import Span, is_whole_name
from piilab.span_sets import taken_by

LEAST_LINES = 4  # a shorter block is a few lines of anything, not a list
FOUND_SHARE = 0.5  # of a block's lines, how many must hold a name found before the rest are added
MOST_WORDS = 5

# A list's line: indentation, its lead (up to the first tab, two spaces or bracket), and after
# that gap anything (an address, a role, a second column). The lazy lead ends at the first gap.
_LINE = re.compile(r"[ \t]*(?P<lead>[^\s<(][^\t\n<(]*?)(?:(?:\t|  | ?[<(])[^\n]*)?[ \t]*")


def _name_lead(text: str, start: int, end: int) -> tuple[int, int] | None:
    """Where the line `start`..`end` of `text` starts with a name of two to MOST_WORDS words
    that make up its whole lead; None where it does not."""
    line = _LINE.fullmatch(text, start, end)
    if line is None:
        return None
    lead = line["lead"]
    return line.span("lead") if 2 <= len(lead.split()) <= MOST_WORDS and is_whole_name(lead) else None


def _blocks(text: str) -> list[list[tuple[int, int]]]:
    """The text's blocks of lines (separated by blank lines), each line as (start, end)."""
    blocks, block, at = [], [], 0
    for line in text.split("\n"):
        if line.strip():
            block.append((at, at + len(line)))
        elif block:
            blocks.append(block)
            block = []
        at += len(line) + 1
    return blocks + [block] if block else blocks


def listed_names(text: str, spans: list[Span]) -> list[Span]:
    """The names on the lines of a list of people (`_blocks` of LEAST_LINES or more whose every
    line leads with a name, at least FOUND_SHARE of them named in `spans`) that `spans` missed."""
    named, taken, added = taken_by(s for s in spans if s[2] == "NAME"), taken_by(spans), []
    for block in _blocks(text):
        leads = [_name_lead(text, start, end) for start, end in block]
        if len(leads) < LEAST_LINES or None in leads:
            continue
        found = sum(named(start, end) for start, end in leads)
        if found >= FOUND_SHARE * len(leads):
            added += [(start, end, "NAME") for start, end in leads if not taken(start, end)]
    return added
