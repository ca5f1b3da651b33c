"""A built dataset folder: its splits' records read back and checked, and recounted against card.json."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from piilab.data.card import SplitStats
from piilab.errors import PiilabError
from piilab.io import numbered_jsonl, read_json

SPLITS = ("train", "test")

_REQUIRED = {"id": (str,), "prompt": (str,), "completion": (str,), "text": (str,), "spans": (list, type(None))}
_OPTIONAL = {"meta": (dict, type(None)), "source": (str, type(None))}
_SPAN_FIELDS = {"label": (str,), "start": (int,), "end": (int,), "value": (str,)}
_SPAN_NEEDS = ("label",)  # what eval and stats read of every span; the rest when present


def _kinds(kinds: tuple[type, ...]) -> str:
    """Types in words, as JSON names the empty value: 'list or null'."""
    return " or ".join("null" if k is type(None) else "object" if k is dict else k.__name__ for k in kinds)


def record_problem(record: dict) -> str | None:
    """What is wrong with a record's fields (type, missing, a span's), or None: checked on read,
    so that nothing fails on an odd field after a whole split has been decoded."""
    for key, kinds in _REQUIRED.items():
        if key not in record:
            return f"record has no '{key}' field"
        if not isinstance(record[key], kinds):
            return f"field '{key}' must be {_kinds(kinds)}"
    for key, kinds in _OPTIONAL.items():
        if key in record and not isinstance(record[key], kinds):
            return f"field '{key}' must be {_kinds(kinds)}"
    for i, span in enumerate(record["spans"] or ()):
        if not isinstance(span, dict):
            return f"field 'spans': spans[{i}] must be an object"
        for key, kinds in _SPAN_FIELDS.items():
            if key in span and (not isinstance(span[key], kinds) or isinstance(span[key], bool)):
                return f"field 'spans': spans[{i}].{key} must be {kinds[0].__name__}"
        missing = [key for key in _SPAN_NEEDS if key not in span]
        if missing:
            return f"field 'spans': spans[{i}] has no '{missing[0]}'"
    return None


def dataset_file(path: str | os.PathLike, split: str = "test") -> Path:
    """The JSONL file of a split: `path` itself if it is a file, else `path/<split>.jsonl`."""
    path = Path(path)
    file = path / f"{split}.jsonl" if path.is_dir() else path
    if not file.is_file():
        raise PiilabError(f"{file}: dataset file not found")
    return file


def iter_records(path: str | os.PathLike, split: str = "test", allow_empty: bool = False) -> Iterator[dict]:
    """Stream and check the records of a split; a bad one is a PiilabError naming file, line, field.

    A split without records is an error too (nothing to train or score on) unless `allow_empty`.
    """
    file = dataset_file(path, split)
    n = 0
    for lineno, record in numbered_jsonl(file):  # bytes that are not UTF-8, deep nesting: named
        if isinstance(record, PiilabError):
            raise record
        where = f"{file}: line {lineno}"
        if not isinstance(record, dict):
            raise PiilabError(f"{where}: a record must be a JSON object")
        problem = record_problem(record)
        if problem:
            raise PiilabError(f"{where}: {problem}")
        n += 1
        yield record
    if n == 0 and not allow_empty:
        raise PiilabError(f"{file}: no records")


def read_records(path: str | os.PathLike, split: str = "test") -> list[dict]:
    """The checked records of a dataset split (a directory from `data build`, or a JSONL file)."""
    return list(iter_records(path, split))


def dataset_stats(path: str | os.PathLike) -> dict[str, Any]:
    """Recount a built dataset from its files and check them against card.json's checksums."""
    path = Path(path)
    card = read_json(path / "card.json") if (path / "card.json").is_file() else None
    out: dict[str, Any] = {"path": str(path), "splits": {}}
    for split in SPLITS:
        file = path / f"{split}.jsonl"
        if not file.is_file():
            continue
        stats = SplitStats(seed=0)
        digest = hashlib.sha256(file.read_bytes()).hexdigest()
        for record in iter_records(file, allow_empty=True):  # a build may leave the test split empty
            labels = [s["label"] for s in record["spans"] or ()]
            meta = record.get("meta") or {}
            stats.add(record.get("source", ""), meta.get("window", 0), labels,
                      (len(record["text"]), len(record["prompt"]), len(record["completion"])),
                      meta.get("heldout_template"))
        entry = {**stats.to_card(), "sha256": digest}
        if card is not None:
            entry["sha256_matches_card"] = card.get("splits", {}).get(split, {}).get("sha256") == digest
        out["splits"][split] = entry
    if not out["splits"]:
        raise PiilabError(f"{path}: no train.jsonl or test.jsonl")
    if card is not None:
        out["sources"] = {k: {x: v[x] for x in ("records_in", "written", "skipped")} for k, v in card.get("sources", {}).items()}
        out["balanced"] = card.get("balanced")
    return out
