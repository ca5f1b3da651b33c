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

from piilab.records import Document
from piilab.sources.base import RecordError, Tally, check_spans, iter_jsonl, position, require

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
        except json.JSONDecodeError:
            try:
                parsed = ast.literal_eval(mask)  # literals only: never runs code
                tally.note("privacy_mask stored as a Python repr")
            except (ValueError, SyntaxError, MemoryError, RecursionError):
                raise RecordError("privacy_mask is not a list") from None
        if isinstance(parsed, list):
            return parsed
    raise RecordError("privacy_mask is not a list")


def to_document(obj: dict, where: str, doc_id: str, tally: Tally) -> Document:
    text = require(obj, "source_text", str)
    mask = parse_mask(obj.get("privacy_mask"), tally) if "privacy_mask" in obj else None
    if mask is None:
        raise RecordError("missing field 'privacy_mask'")
    try:
        raw = [(item["start"], item["end"], item["label"], item.get("value")) for item in mask]
    except (KeyError, TypeError, AttributeError):
        raise RecordError("privacy_mask entry without start, end and label") from None
    spans = check_spans(text, raw, where, tally)
    meta = {
        key: obj[key] for key in ("set", "split", "region", "script") if isinstance(obj.get(key), str)
    }
    language = normalize_language(obj.get("language"))
    if language:
        meta["language"] = language
    return Document(doc_id, text, spans, NAME, meta)


def read(path: Path, tally: Tally) -> Iterator[Document]:
    """Rows of an ai4privacy JSONL file, streamed."""
    for where, obj in iter_jsonl(path, tally):
        native = obj.get("id", obj.get("uid"))
        doc_id = f"{NAME}:{path.stem}:{native if native is not None else position(where)}"
        try:
            yield to_document(obj, where, doc_id, tally)
        except RecordError as err:
            tally.skip(str(err), where)
