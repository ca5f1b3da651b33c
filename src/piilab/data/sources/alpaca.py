"""Alpaca-style instruction data: {instruction, input, output} rows, as a JSON list or JSONL.

These rows carry no spans; each becomes a Document whose text is the `input` and whose meta
holds the instruction and the output, which `instruct.alpaca_record` turns into a record.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from piilab.data.records import Document
from piilab.data.sources.base import (
    RecordError,
    Tally,
    first_content,
    iter_json_items,
    iter_jsonl,
    position,
    require,
)

NAME = "alpaca"


def to_document(obj: dict, doc_id: str) -> Document:
    instruction = require(obj, "instruction", str)
    output = require(obj, "output", str)
    text = obj.get("input") or ""
    if not isinstance(text, str):
        raise RecordError("field 'input' has the wrong type")
    if not instruction.strip():
        raise RecordError("empty instruction")
    if not output.strip():
        raise RecordError("empty output")
    return Document(doc_id, text, None, NAME, {"instruction": instruction, "output": output})


def read(path: Path, tally: Tally) -> Iterator[Document]:
    """Rows of an alpaca_data.json (or a JSONL file of the same objects)."""
    rows = iter_json_items(path, tally) if first_content(path)[1] == "[" else iter_jsonl(path, tally)
    for where, obj in rows:
        try:
            yield to_document(obj, f"{NAME}:{path.stem}:{position(where)}")
        except RecordError as err:
            tally.skip(str(err), where)
