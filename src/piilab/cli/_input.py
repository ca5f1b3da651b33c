"""The rows a command reads from a .jsonl --input: a bad row is skipped and counted, not fatal.

A run over thousands of rows should not stop at one bad row, nor lose the rows before it. Each
skipped row is named by file and line in a warning (the first WARNED_ROWS; then only counted),
never by its content, which may be PII; a file without one good row is an error naming the
first bad one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from piilab.errors import PiilabError

log = logging.getLogger(__name__)

WARNED_ROWS = 10
"""Skipped rows named one by one in the log; past that, only counted."""


@dataclass
class Rows:
    """The good rows of a file: each one's id (its "id", else its number among the file's rows
    from 0), its value of the field read, and its line; how many rows were skipped."""

    path: Path
    ids: list = field(default_factory=list)
    values: list[str] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)
    skipped: int = 0

    def skip(self, line: int, problem: str) -> None:
        self.skipped += 1
        if self.skipped <= WARNED_ROWS:
            log.warning("%s: line %d: %s; row skipped", self.path, line, problem)

    def keep(self, chosen: list[int]) -> None:
        """Keep only the rows at these positions (the others were skipped by the caller)."""
        self.ids, self.values, self.lines = ([column[i] for i in chosen]
                                             for column in (self.ids, self.values, self.lines))

    def report(self, what: str) -> None:
        if self.skipped:
            log.warning("%s: %d row(s) skipped, %d %s", self.path, self.skipped, len(self.values), what)


def string_rows(path: str | Path, name: str) -> Rows:
    """The rows of a .jsonl file that are JSON objects with a string field `name`."""
    from piilab.io import numbered_jsonl

    rows, first = Rows(Path(path)), ""
    for number, (line, row) in enumerate(numbered_jsonl(path)):
        if isinstance(row, PiilabError):
            problem = str(row).removeprefix(f"{path}: line {line}: ")
        elif not isinstance(row, dict):
            problem = "not a JSON object"
        elif not isinstance(row.get(name), str):
            problem = f"no string field '{name}'"
        else:
            rows.ids.append(row.get("id", number))
            rows.values.append(row[name])
            rows.lines.append(line)
            continue
        rows.skip(line, problem)
        first = first or f"line {line}: {problem}"
    if not rows.values:
        raise PiilabError(f"{path}: no row with a string field '{name}'" +
                          (f" (the first bad row: {first})" if first else ""))
    return rows


def text_argument(value: str, name: str) -> str:
    """A text given on the command line, if it is one: not blank, and valid Unicode (bytes that
    are not UTF-8 reach Python as lone surrogates, which no tokenizer takes)."""
    from piilab.io import has_bad_utf8

    if not value.strip():
        raise PiilabError(f"{name} is empty")
    if has_bad_utf8(value):
        raise PiilabError(f"{name} is not UTF-8 text (check the terminal's or the script's encoding)")
    return value
