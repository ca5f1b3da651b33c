"""piilab's own span format: JSON Lines (or a JSON list) of {id, text, spans, source?, meta?}.

`piilab data synth` writes it, and train.jsonl / test.jsonl read back as it too (their extra
keys are ignored). `spans: null` marks an unlabelled text.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from piilab.data.records import Document
from piilab.data.sources.base import (
    RecordError,
    Tally,
    check_spans,
    first_content,
    iter_json_items,
    iter_jsonl,
    position,
    require,
)

NAME = "spans"


def to_document(obj: dict, where: str, fallback_id: str, tally: Tally) -> Document:
    text = require(obj, "text", str)
    if "spans" not in obj:
        raise RecordError("missing field 'spans'")
    spans = None
    if obj["spans"] is not None:
        raw = []
        for item in require(obj, "spans", list):
            if not isinstance(item, dict) or not {"start", "end", "label"} <= item.keys():
                raise RecordError("span without start, end and label")
            raw.append((item["start"], item["end"], item["label"], item.get("value")))
        spans = check_spans(text, raw, where, tally)
    doc_id = obj.get("id")
    meta = obj.get("meta") if isinstance(obj.get("meta"), dict) else {}
    source = obj.get("source") if isinstance(obj.get("source"), str) and obj.get("source") else NAME
    return Document(str(doc_id) if doc_id is not None else fallback_id, text, spans, source, dict(meta))


def read(path: Path, tally: Tally) -> Iterator[Document]:
    """Documents from a span JSONL file (or a JSON list of the same objects)."""
    rows = iter_json_items(path, tally) if first_content(path)[1] == "[" else iter_jsonl(path, tally)
    for where, obj in rows:
        try:
            yield to_document(obj, where, f"{NAME}:{path.stem}:{position(where)}", tally)
        except RecordError as err:
            tally.skip(str(err), where)
