"""Canonical labels and the crosswalk from every source's label names to them (design.md, "Labels").

The crosswalk is data (`piilab/data/crosswalk.csv`), one row per source label:

    source_label,canonical,when,note
    GIVENNAME,NAME,always,ai4privacy 400k
    CITY,STREET_ADDRESS,adjacent,a city alone is not a street address
    DATE,,,not one of the seven labels

`canonical` empty maps the label to nothing. `when=adjacent` makes the span count only as part
of a neighbouring span of the same canonical label that is mapped `always` (a city next to a
street is part of an address; a city alone is not). A user's crosswalk is laid over the shipped
one row by row, so it only needs the rows it changes.
"""

from __future__ import annotations

import csv
import io
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from piilab.data.records import Span
from piilab.errors import PiilabError

# The experiment's seven labels, each with the one-line definition the default prompt shows.
# Kept terse: every training record repeats them, and a 135M model is tuned with 256-token rows.
CANONICAL: dict[str, str] = {
    "NAME": "a private person's name, not an author, teacher or public figure",
    "EMAIL": "a person's email address",
    "USERNAME": "a person's username or handle",
    "ID_NUM": "a number identifying a person or account, not an order number",
    "PHONE_NUM": "a person's phone number",
    "URL_PERSONAL": "a link to a person's own page or profile",
    "STREET_ADDRESS": "a person's street address",
}
DEFAULT_LABELS: tuple[str, ...] = tuple(CANONICAL)

# Which gaps may join two adjacent spans of the same label. Names only join on the same line
# (a newline between two names is a list of two people); addresses may run over lines and
# commas ("12 Main St,\nSpringfield"). Other labels join only when the spans touch: two emails
# separated by a space are two emails.
_MERGE_GAPS: dict[str, re.Pattern] = {
    "NAME": re.compile(r"[ \t\u00a0\u202f]+"),
    "STREET_ADDRESS": re.compile(r"\s*(?:,\s*)?"),
}

_WHEN = ("always", "adjacent")

# Outcomes of one source-label occurrence, as reported in the card's crosswalk coverage.
KEPT = "kept"
UNMAPPED = "mapped to nothing"
UNKNOWN = "not in the crosswalk"
PART_DROPPED = "address part without a street (dropped)"
OUTSIDE = "outside the label set (dropped)"


def definition(label: str) -> str:
    """The one-line definition of a label; labels from a user crosswalk get a plain reading."""
    return CANONICAL.get(label) or label.lower().replace("_", " ")


@dataclass(frozen=True)
class Rule:
    """Where one source label goes."""

    canonical: str | None
    """Canonical label, or None for 'maps to nothing'."""
    adjacent_only: bool = False
    """Counts only when merged into a neighbouring span of the same label mapped 'always'."""


@dataclass
class Crosswalk:
    """Source label name (upper case) -> Rule, plus where the table came from."""

    rules: dict[str, Rule]
    origin: str = "builtin"

    def rule(self, source_label: str) -> Rule | None:
        return self.rules.get(source_label.upper())

    def targets(self) -> set[str]:
        return {r.canonical for r in self.rules.values() if r.canonical}

    def describe(self, source_label: str) -> str | None:
        """Where a source label goes, as the card shows it."""
        rule = self.rule(source_label)
        if rule is None or rule.canonical is None:
            return None
        return rule.canonical + (" (as part of an adjacent span)" if rule.adjacent_only else "")


def parse_crosswalk(text: str, origin: str) -> dict[str, Rule]:
    """Parse crosswalk CSV text; a bad row is a PiilabError naming the file and line."""
    reader = csv.DictReader(io.StringIO(text))
    if not reader.fieldnames or not {"source_label", "canonical"} <= set(reader.fieldnames):
        raise PiilabError(f"{origin}: a crosswalk needs the columns source_label,canonical[,when,note]")
    rules: dict[str, Rule] = {}
    for row in reader:
        line = reader.line_num
        name = (row.get("source_label") or "").strip().upper()
        canonical = (row.get("canonical") or "").strip().upper() or None
        when = (row.get("when") or "always").strip().lower() or "always"
        if not name:
            raise PiilabError(f"{origin}: line {line}: empty source_label")
        if when not in _WHEN:
            raise PiilabError(f"{origin}: line {line}: when must be one of {_WHEN}, got {when!r}")
        if canonical and not re.fullmatch(r"[A-Z][A-Z0-9_]*", canonical):
            # The answer format parses labels as upper-case words.
            raise PiilabError(f"{origin}: line {line}: label {canonical!r} must be A-Z, 0-9, _")
        rules[name] = Rule(canonical, adjacent_only=when == "adjacent" and canonical is not None)
    return rules


def read_crosswalk_file(path: Path) -> str:
    """A user crosswalk's text: UTF-8, with or without a byte-order mark (as Excel saves CSV).

    Anything else is a one-line error naming the file.
    """
    try:
        return path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise PiilabError(f"{path}: crosswalk file not found") from None
    except IsADirectoryError:
        raise PiilabError(f"{path}: is a directory, not a crosswalk CSV file") from None
    except UnicodeDecodeError as err:
        line = err.object.count(b"\n", 0, err.start) + 1
        raise PiilabError(f"{path}: line {line}: not UTF-8; save the crosswalk as UTF-8") from None
    except OSError as err:
        raise PiilabError(f"{path}: cannot read the crosswalk ({err.strerror})") from None


def load_crosswalk(path: str | Path | None = None) -> Crosswalk:
    """The shipped crosswalk, with the rows of a user CSV at `path` laid over it."""
    text = resources.files("piilab").joinpath("data/crosswalk.csv").read_text(encoding="utf-8")
    rules = parse_crosswalk(text, "piilab/data/crosswalk.csv")
    if path is None:
        return Crosswalk(rules)
    path = Path(path)
    rules.update(parse_crosswalk(read_crosswalk_file(path), str(path)))
    return Crosswalk(rules, origin=str(path))


def resolve_labels(labels: Iterable[str] | None, crosswalk: Crosswalk) -> tuple[str, ...]:
    """Check a user label set against what the crosswalk can produce; default: the seven."""
    if labels is None:
        return DEFAULT_LABELS
    chosen = tuple(dict.fromkeys(label.strip().upper() for label in labels if label.strip()))
    known = set(CANONICAL) | crosswalk.targets()
    unknown = [label for label in chosen if label not in known]
    if unknown:
        raise PiilabError(f"unknown label(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    if not chosen:
        raise PiilabError("the label set is empty")
    return chosen


@dataclass
class LabelTally:
    """How often each source label occurred and what became of it: (source label, outcome) -> n."""

    counts: Counter = field(default_factory=Counter)

    def add(self, source_label: str, outcome: str, n: int = 1) -> None:
        self.counts[(source_label, outcome)] += n

    def coverage(self, crosswalk: Crosswalk) -> dict[str, dict]:
        """Per source label: its count, where it goes, and the count of each outcome."""
        out: dict[str, dict] = {}
        for (label, outcome), n in sorted(self.counts.items()):
            entry = out.setdefault(label, {"count": 0, "to": crosswalk.describe(label), "outcomes": {}})
            entry["count"] += n
            entry["outcomes"][outcome] = entry["outcomes"].get(outcome, 0) + n
        return out


def apply_crosswalk(
    text: str,
    spans: Sequence[Span],
    crosswalk: Crosswalk,
    labels: Sequence[str],
    tally: LabelTally | None = None,
) -> list[Span]:
    """Map source spans (sorted, non-overlapping) to canonical ones: map, merge, restrict.

    Every source span is counted in `tally` under one outcome, so nothing disappears unreported.
    """
    rules = crosswalk.rules
    outcomes: list[tuple[str, str]] = []
    # Runs of mergeable neighbours: [start, end, label, [source labels], has a full span, first span].
    groups: list[list] = []
    last = None
    for span in spans:
        source = span.label
        rule = rules.get(source) or rules.get(source.upper())
        if rule is None or rule.canonical is None:
            outcomes.append((source, UNKNOWN if rule is None else UNMAPPED))
            continue
        label = rule.canonical
        start = span.start
        if last is not None and last[2] == label and start >= last[1]:
            gap = _MERGE_GAPS.get(label)  # None: the spans must touch
            if start == last[1] if gap is None else gap.fullmatch(text, last[1], start) is not None:
                last[1] = span.end
                last[3].append(source)
                if not rule.adjacent_only:
                    last[4] = True
                continue
        last = [start, span.end, label, [source], not rule.adjacent_only, span]
        groups.append(last)

    out: list[Span] = []
    for start, end, label, members, full, first in groups:
        if not full:
            outcome = PART_DROPPED
        elif label not in labels:
            outcome = OUTSIDE
        else:
            outcome = KEPT
            # A span that is already canonical and unmerged is kept as it is (spans are immutable).
            same = first.label == label and first.end == end
            out.append(first if same else Span.trusted(start, end, label, text[start:end]))
        for member in members:
            outcomes.append((member, outcome))
    if tally is not None:
        tally.counts.update(outcomes)
    return out
