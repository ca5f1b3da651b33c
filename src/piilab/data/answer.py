"""The answer format (design.md, "Answer format") and its inverse.

One PII item per line, in order of first appearance, each once:

    Jane Doe (NAME)
    jane.doe@example.com (EMAIL)

A text with no PII has the answer `None`.
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections.abc import Collection, Iterable

NO_PII = "None"

# "value (LABEL)": the label is the last parenthesised upper-case word on the line, so values
# that contain parentheses themselves ("(555) 010-2000 (PHONE_NUM)") still parse.
_LINE = re.compile(r"^(?P<value>.*\S)\s*\((?P<label>[A-Z][A-Z0-9_]*)\)\s*$")
_BULLET = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s+")
_SPACE = re.compile(r"\s+")
_PUNCT = string.punctuation + "“”‘’«»…–—"


def format_answer(items: Iterable[tuple[str, str]]) -> str:
    """Render (value, label) pairs as the answer, keeping the first of each repeated pair."""
    pairs = dict.fromkeys([(value, label) for value, label in items])  # first of each, in order
    return "\n".join([f"{value} ({label})" for value, label in pairs]) if pairs else NO_PII


def parse_answer_counted(text: str, labels: Collection[str] | None = None
                          ) -> tuple[list[tuple[str, str]], int]:
    """Parse an answer into (value, label) pairs and the number of malformed lines.

    Total: never raises. Blank lines and a `None` line are not malformed; list bullets
    ("- ", "1. ") that models like to add are tolerated. Given the prompt's `labels`, a line
    whose label is not among them is malformed too (design.md, "Answer format").
    """
    items: list[tuple[str, str]] = []
    malformed = 0
    for raw in (text or "").splitlines():
        line = _BULLET.sub("", raw).strip()
        if not line or line == NO_PII:
            continue
        # a value may itself start like a bullet ("55) 010 (PHONE_NUM)"): then the line as it is
        match = _LINE.match(line) or _LINE.match(raw.strip())
        if match and (labels is None or match["label"] in labels):
            items.append((match["value"].strip(), match["label"]))
        else:
            malformed += 1
    return items, malformed


def parse_answer(text: str, labels: Collection[str] | None = None) -> list[tuple[str, str]]:
    """Parse an answer into (value, label) pairs; malformed lines (and, given `labels`, lines
    with a label outside them) are skipped."""
    return parse_answer_counted(text, labels)[0]


def normalize_value(value: str) -> str:
    """Normalise a PII value for matching: NFKC, case-fold, collapse whitespace, strip punctuation."""
    value = unicodedata.normalize("NFKC", value).casefold()
    value = _SPACE.sub(" ", value).strip()
    return value.strip(_PUNCT + " ")
