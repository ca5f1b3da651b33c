"""CoNLL-style token-per-line files with BIO, BILUO, IOBES or plain IO tags.

Each line is `token<TAB or spaces>...<tag>` (the first field is the token, the last the tag, so
CoNLL-2003's four columns work too). If the file starts with `-DOCSTART-`, documents run from one
`-DOCSTART-` to the next and blank lines separate their sentences; otherwise every blank-line
separated block is a document. CoNLL keeps no whitespace, so the text joins tokens with one
space and sentences with a newline.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from piilab.data.records import Document
from piilab.data.sources.base import RecordError, Tally, check_spans
from piilab.data.sources.tags import tags_to_spans
from piilab.errors import PiilabError

NAME = "conll"
DOCSTART = "-DOCSTART-"


def _blocks(path: Path) -> Iterator[tuple[int, list[list[tuple[int, str | None]]]]]:
    """(first line number, sentences of (line number, line or None if not UTF-8)) per document."""
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        raise PiilabError(f"{path}: file not found") from None
    with handle:
        by_docstart: bool | None = None
        doc: list[list[tuple[int, str | None]]] = []
        sentence: list[tuple[int, str | None]] = []
        first = 0
        for lineno, raw in enumerate(handle, 1):
            try:
                line: str | None = raw.decode("utf-8-sig" if lineno == 1 else "utf-8").strip()
            except UnicodeDecodeError:
                line = None
            if line == "":
                if sentence:
                    doc.append(sentence)
                    sentence = []
                if not by_docstart and doc:
                    yield first, doc
                    doc = []
                continue
            if by_docstart is None:
                by_docstart = line is not None and line.startswith(DOCSTART)
            if line is not None and line.startswith(DOCSTART):
                if sentence:
                    doc.append(sentence)
                    sentence = []
                if doc:
                    yield first, doc
                doc = []
                continue
            if not doc and not sentence:
                first = lineno
            sentence.append((lineno, line))
        if sentence:
            doc.append(sentence)
        if doc:
            yield first, doc


def to_document(sentences: list[list[tuple[int, str | None]]], where: str, doc_id: str, tally: Tally) -> Document:
    tokens: list[str] = []
    tags: list[str] = []
    starts: list[int] = []
    pieces: list[str] = []
    offset = 0
    for k, sentence in enumerate(sentences):
        for j, (_, line) in enumerate(sentence):
            if line is None:
                raise RecordError("invalid UTF-8")
            parts = line.split("\t") if "\t" in line else line.split()
            if len(parts) < 2 or not parts[0].strip():
                raise RecordError("line without a token and a tag")
            if j > 0 or k > 0:
                sep = " " if j > 0 else "\n"
                pieces.append(sep)
                offset += 1
            token = parts[0].strip()
            starts.append(offset)
            pieces.append(token)
            offset += len(token)
            tokens.append(token)
            tags.append(parts[-1].strip())
    text = "".join(pieces)
    ends = [s + len(t) for s, t in zip(starts, tokens)]
    try:
        raw, repairs = tags_to_spans(starts, ends, tags)
    except ValueError as err:
        raise RecordError(str(err)) from None
    for reason in repairs:
        tally.repair(reason, where)
    spans = check_spans(text, [(s, e, label, None) for s, e, label in raw], where, tally)
    return Document(doc_id, text, spans, NAME, {"tokens": len(tokens)})


def read(path: Path, tally: Tally) -> Iterator[Document]:
    """Documents of a CoNLL file."""
    for index, (first, sentences) in enumerate(_blocks(path)):
        where = f"{path}:{first}"
        tally.read += 1
        try:
            yield to_document(sentences, where, f"{NAME}:{path.stem}:{index}", tally)
        except RecordError as err:
            tally.skip(str(err), where)


def tokens_and_offsets(text: str) -> tuple[list[int], list[int]]:
    """Token offsets of a text written by this reader (tokens never contain whitespace)."""
    starts, ends, at = [], [], 0
    for token in text.replace("\n", " ").split(" "):
        starts.append(at)
        ends.append(at + len(token))
        at += len(token) + 1
    return starts, ends
