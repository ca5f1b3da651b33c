"""Kaggle "PII Data Detection" essays: a JSON list of spaCy tokens with BIO labels.

The text is rebuilt from `tokens` and `trailing_whitespace` and must equal `full_text` exactly;
spans come from the token offsets, so a name split over a line break keeps the break. The
competition's test file has no `labels`: such essays are read as unlabelled documents.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import accumulate
from pathlib import Path

from piilab.data.records import Document
from piilab.data.sources.base import (
    RecordError,
    Tally,
    check_spans,
    iter_json_items,
    position,
    require,
)
from piilab.data.sources.tags import tags_to_spans

NAME = "kaggle"


def token_offsets(tokens: list[str], trailing_whitespace: list[bool]) -> tuple[str, list[int], list[int]]:
    """The rebuilt text and each token's start and end offset in it."""
    pieces = [tok + (" " if ws else "") for tok, ws in zip(tokens, trailing_whitespace)]
    starts = [0, *accumulate(len(p) for p in pieces)][:-1]
    ends = [s + len(t) for s, t in zip(starts, tokens)]
    return "".join(pieces), starts, ends


def to_document(obj: dict, where: str, doc_id: str, tally: Tally) -> Document:
    """One essay as a Document (spans with the source labels, e.g. NAME_STUDENT)."""
    text = require(obj, "full_text", str)
    tokens = require(obj, "tokens", list)
    spaces = require(obj, "trailing_whitespace", list)
    labels = obj.get("labels")
    if labels is not None and not isinstance(labels, list):
        raise RecordError("field 'labels' has the wrong type")
    if len(tokens) != len(spaces) or (labels is not None and len(labels) != len(tokens)):
        raise RecordError("tokens, trailing_whitespace and labels of different lengths")
    if not all(isinstance(t, str) for t in tokens) or not all(isinstance(w, bool) for w in spaces):
        raise RecordError("tokens or trailing_whitespace of the wrong type")
    rebuilt, starts, ends = token_offsets(tokens, spaces)
    if rebuilt != text:
        raise RecordError("tokens and trailing_whitespace do not rebuild full_text")
    meta = {"document": obj.get("document")}
    if labels is None:
        return Document(doc_id, text, None, NAME, meta)
    if not all(isinstance(t, str) for t in labels):
        raise RecordError("field 'labels' has the wrong type")
    try:
        raw, repairs = tags_to_spans(starts, ends, labels)
    except ValueError as err:
        raise RecordError(str(err)) from None
    for reason in repairs:
        tally.repair(reason, where)
    spans = check_spans(text, [(s, e, label, None) for s, e, label in raw], where, tally)
    return Document(doc_id, text, spans, NAME, meta)


def read(path: Path, tally: Tally) -> Iterator[Document]:
    """Essays from a Kaggle train.json or test.json."""
    for where, obj in iter_json_items(path, tally):
        native = obj.get("document")  # null counts as missing: the record's position stands in
        doc_id = f"{NAME}:{path.stem}:{native if native is not None else position(where)}"
        try:
            yield to_document(obj, where, doc_id, tally)
        except RecordError as err:
            tally.skip(str(err), where)
