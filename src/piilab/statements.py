"""Bank statements in SWIFT's MT940 format, read by their field tags.

An MT940 statement is a list of fields, each a line that begins with a tag: ":20:" the
statement's reference, ":25:" the account's identification, ":28C:" its number, ":60F:" and
":62F:" the balances, ":61:" a transaction, ":86:" its details. The account of the ":25:" field
is the holder's account number (ID_NUM) by the format's own definition, whatever a model makes of
a page of digits; and a tag is never part of a value, so a span that reaches over one was read
from the field's layout, not from a value.
"""

from __future__ import annotations

import re

from piilab.addresses import Span
from piilab.span_sets import taken_by

_TAG = re.compile(r"(?m)^:\d\d[A-Z]?:")
# The ":25:" field: an optional bank code or BIC with a slash ("51230800/"), then the account,
# which some banks follow with its currency ("NL08DEUT0319809633EUR": the account ends at a digit).
_ACCOUNT = re.compile(r"(?m)^:25:(?:[A-Z0-9]{4,11}/)?(?P<account>[A-Z0-9]{4,33}\d)(?:[A-Z]{3})?[ \t]*$")
_STATEMENT_TAGS = frozenset({":20:", ":25:"})  # the two fields every MT940 statement opens with
LEAST_TAGS = 4  # a text with fewer tagged lines is not read as a statement


def field_tags(text: str) -> list[tuple[int, int]]:
    """Where the field tags of an MT940 statement are (":61:" at a line's start); none where the
    text is not one (fewer than LEAST_TAGS tagged lines, or no ":20:" and ":25:" fields)."""
    tags = [(m.start(), m.end()) for m in _TAG.finditer(text)]
    if len(tags) < LEAST_TAGS or not _STATEMENT_TAGS <= {text[a:b] for a, b in tags}:
        return []
    return tags


def statement_accounts(text: str) -> list[Span]:
    """The accounts of an MT940 statement's ":25:" fields, as ID_NUM ("0000007055" of
    ":25:51230800/0000007055", a whole IBAN); none in a text that is not a statement."""
    if not field_tags(text):
        return []
    return [(m.start("account"), m.end("account"), "ID_NUM") for m in _ACCOUNT.finditer(text)]


def over_field_tag(text: str):
    """(start, end) -> whether that span of `text` shares a character with one of its MT940
    field tags (always False where the text is not a statement)."""
    return taken_by(field_tags(text))
