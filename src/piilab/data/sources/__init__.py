"""Readers for every input format, one module each, and the choice between them.

`read_documents(spec, tally)` expands a path (file, glob or directory), detects each file's
format from its content unless the spec names one, and streams `Document`s with the source's
own label names; the crosswalk to canonical labels happens later (piilab.data.labels).
"""

from __future__ import annotations

import glob
import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from piilab.data.records import Document
from piilab.data.sources import ai4privacy, alpaca, conll, kaggle, presidio, spans
from piilab.data.sources.base import Tally, first_content, first_line, peek
from piilab.errors import PiilabError

log = logging.getLogger(__name__)

Reader = Callable[[Path, Tally], Iterator[Document]]
READERS: dict[str, Reader] = {
    "kaggle": kaggle.read,
    "ai4privacy": ai4privacy.read,
    "presidio": presidio.read,
    "conll": conll.read,
    "spans": spans.read,
    "alpaca": alpaca.read,
}
FORMATS = ("auto", *READERS)
# Files a directory contributes; anything else in it (README, images) is not data.
DATA_SUFFIXES = {".json", ".jsonl", ".conll", ".conllu", ".bio", ".iob", ".tsv", ".txt"}

_PREFIX = re.compile(r"[A-Za-z][A-Za-z0-9_-]+")
_TAG = re.compile(r"^(O|[BIOLUES]-\S+|[A-Z][A-Z_]*)$")


@dataclass(frozen=True)
class SourceSpec:
    """One `--source FORMAT:PATH` argument."""

    path: str
    """A file, a glob (`data/*.jsonl`) or a directory (searched recursively)."""
    format: str = "auto"
    """A reader name, or 'auto' to detect each file's format from its content."""

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise PiilabError(f"unknown format {self.format!r}; choose from {', '.join(FORMATS)}")
        if not self.path:  # Path("") is the current directory, which would be read recursively
            given = self.path if self.format == "auto" else f"{self.format}:{self.path}"
            raise PiilabError(f"{given!r}: empty path; give FORMAT:PATH or a path")

    @classmethod
    def named(cls, text: str) -> "SourceSpec | None":
        """'kaggle:data/train.json' as a spec; None for anything that names no reader (a path)."""
        fmt, sep, path = text.partition(":")
        return cls(path=path, format=fmt) if sep and fmt in READERS else None

    def key(self) -> str:
        """The spec as a settings file keeps it: its format, and its path made absolute."""
        return f"{self.format}:{Path(self.path).expanduser().resolve()}"

    @classmethod
    def parse(cls, text: str) -> "SourceSpec":
        """'kaggle:data/train.json' or a bare path (format detected)."""
        fmt, sep, path = text.partition(":")
        if sep and fmt in FORMATS:
            return cls(path=path, format=fmt)
        # "foo:x.json" is a misspelt format, unless it is a path that exists or a drive letter.
        if sep and _PREFIX.fullmatch(fmt) and not Path(text).exists():
            raise PiilabError(f"{text}: unknown format {fmt!r}; known formats: {', '.join(FORMATS)}")
        return cls(path=text)


def expand_paths(pattern: str) -> list[Path]:
    """The files a path, glob or directory stands for, sorted; none is an error."""
    path = Path(pattern).expanduser()
    if path.is_dir():
        files = sorted(
            p for p in path.rglob("*")
            if p.is_file() and p.suffix.lower() in DATA_SUFFIXES
            and not any(part.startswith(".") for part in p.relative_to(path).parts)
        )
    elif path.is_file():
        files = [path]
    elif glob.has_magic(pattern):
        files = sorted(Path(p) for p in glob.glob(str(path), recursive=True) if Path(p).is_file())
    else:
        raise PiilabError(f"{pattern}: no such file or directory")
    if not files:
        raise PiilabError(f"{pattern}: no data files found")
    return files


def detect_format(path: Path) -> str:
    """The reader for a file, judged from the key names (or tag lines) at its start."""
    offset, start = first_content(path)  # (past any run of whitespace, however long)
    if not start:
        raise PiilabError(f"{path}: the file is empty (or only whitespace)")
    head = peek(path, offset=offset)
    if start == "{" and "\n" not in head:
        head = first_line(path, offset=offset)  # one JSON Lines record longer than the peek: read all of it
    if start in ("[", "{"):
        if '"entity_type"' in head or '"start_position"' in head:
            return "presidio"
        if '"trailing_whitespace"' in head:
            return "kaggle"
        if '"source_text"' in head:
            return "ai4privacy"
        if '"instruction"' in head:
            return "alpaca"
        if '"text"' in head and '"spans"' in head:
            return "spans"
    else:
        lines = [line for line in head.splitlines()[:50] if line.strip()]
        lines = [line for line in lines if not line.startswith(conll.DOCSTART)]
        fields = [line.split("\t") if "\t" in line else line.split() for line in lines[:20]]
        if fields and all(len(f) >= 2 and _TAG.match(f[-1].strip()) for f in fields):
            return "conll"
    raise PiilabError(
        f"{path}: cannot tell the format from its content; name it as FORMAT:PATH "
        f"(one of {', '.join(READERS)})"
    )


def read_documents(
    spec: SourceSpec, tallies: dict[str, Tally], strict: bool = False
) -> Iterator[tuple[Tally, Document]]:
    """Stream (tally, document) for every file a spec names; one tally per format."""
    for path in expand_paths(spec.path):
        fmt = spec.format if spec.format != "auto" else detect_format(path)
        tally = tallies.setdefault(fmt, Tally(fmt, strict=strict))
        tally.files.append(str(path))
        log.info("reading %s as %s", path, fmt)
        before = tally.read
        for doc in READERS[fmt](path, tally):
            yield tally, doc
        if tally.read == before:
            log.warning("%s: no records in it", path)
            tally.empty_files.append(str(path))
