"""presidio-research synthetic data (v1 and v2): a JSON list with unsorted character spans.

The spans are the source of truth (v1's BILUO `tags` miss a few spans, so they are ignored);
`template_id` is kept so the split can hold whole templates out.
"""

from __future__ import annotations

from collections.abc import Iterator
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

NAME = "presidio"


def to_document(obj: dict, where: str, doc_id: str, tally: Tally) -> Document:
    text = require(obj, "full_text", str)
    raw = []
    for item in require(obj, "spans", list):
        if not isinstance(item, dict) or not {"entity_type", "start_position", "end_position"} <= item.keys():
            raise RecordError("span without entity_type, start_position and end_position")
        raw.append((item["start_position"], item["end_position"], item["entity_type"], item.get("entity_value")))
    spans = check_spans(text, raw, where, tally)
    meta = {}
    if obj.get("template_id") is not None:
        meta["template_id"] = f"{NAME}:{obj['template_id']}"
    return Document(doc_id, text, spans, NAME, meta)


def read(path: Path, tally: Tally) -> Iterator[Document]:
    """Records of a presidio-research synth_dataset JSON file."""
    for where, obj in iter_json_items(path, tally):
        doc_id = f"{NAME}:{path.stem}:{position(where)}"
        try:
            yield to_document(obj, where, doc_id, tally)
        except RecordError as err:
            tally.skip(str(err), where)
