"""ai4privacy pii-masking 200k / 300k / 400k / OpenPII: JSON Lines with character-offset masks.

Both field generations are read (`id`/`uid`, `set`/`split`); `privacy_mask` may be a list or a
string holding JSON or a Python repr. Offsets are trusted only where they match `value`
(see base.check_spans); the mBERT token tags are ignored, as they are misaligned upstream.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from piilab.data.records import Document
from piilab.data.sources.base import (
    RecordError,
    Tally,
    check_spans,
    iter_jsonl,
    position,
    require,
)

NAME = "ai4privacy"

_LANGUAGES = {
    "english": "en", "french": "fr", "german": "de", "spanish": "es", "italian": "it",
    "dutch": "nl", "portuguese": "pt", "hindi": "hi", "telugu": "te", "swedish": "sv",
}


def normalize_language(value: Any) -> str | None:
    """'English' (300k) and 'en' (200k, 400k) both become 'en'."""
    if not isinstance(value, str) or not value.strip():
        return None
    value = value.strip().lower()
    return _LANGUAGES.get(value, value)


def parse_mask(mask: Any, tally: Tally) -> list:
    """`privacy_mask` as a list, whether stored as a list, a JSON string or a Python repr."""
    if isinstance(mask, list):
        return mask
    if isinstance(mask, str):
        try:
            parsed = json.loads(mask)
            tally.note("privacy_mask stored as a JSON string")
        except (ValueError, RecursionError):  # not JSON, or JSON too deep or a number too long to read
            try:
                parsed = ast.literal_eval(mask)  # literals only: never runs code
                tally.note("privacy_mask stored as a Python repr")
            except (ValueError, SyntaxError, MemoryError, RecursionError):
                raise RecordError("privacy_mask is not a list") from None
        if isinstance(parsed, list):
            return parsed
    raise RecordError("privacy_mask is not a list")


_META_KEYS = ("set", "split", "region", "script")
# Every field a row is read for; the rest (mBERT tokens and tags, target_text, ...) is never built.
FIELDS = ("source_text", "privacy_mask", "id", "uid", "language", *_META_KEYS)


def to_document(obj: dict, where: str, doc_id: str, tally: Tally) -> Document:
    text = obj.get("source_text")
    if type(text) is not str:
        text = require(obj, "source_text", str)
    mask = obj.get("privacy_mask")
    if type(mask) is not list:
        if "privacy_mask" not in obj:
            raise RecordError("missing field 'privacy_mask'")
        mask = parse_mask(mask, tally)
    try:
        raw = [(item["start"], item["end"], item["label"], item.get("value")) for item in mask]
    except (KeyError, TypeError, AttributeError):
        raise RecordError("privacy_mask entry without start, end and label") from None
    spans = check_spans(text, raw, where, tally)
    meta = {}
    for key in _META_KEYS:
        value = obj.get(key)
        if isinstance(value, str):
            meta[key] = value
    language = normalize_language(obj.get("language"))
    if language:
        meta["language"] = language
    return Document.trusted(doc_id, text, spans, NAME, meta)  # check_spans made the spans exact and sorted


def read(path: Path, tally: Tally) -> Iterator[Document]:
    """Rows of an ai4privacy JSONL file, streamed."""
    prefix = f"{NAME}:{path.stem}:"
    for where, obj in iter_jsonl(path, tally, FIELDS):
        native = obj.get("id", obj.get("uid"))
        doc_id = f"{prefix}{native if native is not None else position(where)}"
        try:
            yield to_document(obj, where, doc_id, tally)
        except RecordError as err:
            tally.skip(str(err), where)
