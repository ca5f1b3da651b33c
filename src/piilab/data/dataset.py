"""A built dataset folder: its splits' records read back and checked, and recounted against card.json."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from piilab.data.card import SplitStats
from piilab.errors import PiilabError
from piilab.io import read_json

SPLITS = ("train", "test")

_REQUIRED = {"id": (str,), "prompt": (str,), "completion": (str,), "text": (str,), "spans": (list, type(None))}


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
    with file.open(encoding="utf-8") as handle:
        for lineno, line in enumerate(handle, 1):
            if not line.strip():
                continue
            where = f"{file}: line {lineno}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise PiilabError(f"{where}: malformed JSON ({err.msg})") from None
            if not isinstance(record, dict):
                raise PiilabError(f"{where}: a record must be a JSON object")
            for key, kinds in _REQUIRED.items():
                if key not in record:
                    raise PiilabError(f"{where}: record has no '{key}' field")
                if not isinstance(record[key], kinds):
                    raise PiilabError(f"{where}: field '{key}' must be {' or '.join(k.__name__ for k in kinds)}")
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
