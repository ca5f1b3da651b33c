"""`piilab score`: what `piilab extract --output` found, scored against labelled data.

The found file's rows are matched to the labelled documents by id (extract gives a `FORMAT:PATH`
input's documents the ids the reader gives them, as here). A row holds the digest of the text it
was searched in (`input_digest`): a row made from another text than the document's is an error,
not a score, and so is a span that is not [start, end) of that text or an item whose label is
not a string. Each text is scored by `piilab.eval.span_scores` (exact match and token level, per
label and per source, items per 100 PII-free texts), as benchmarks/real_text.py scores piilab
and Presidio. Documents without a row and rows without a document are counted and reported,
never scored as misses or false alarms.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from piilab.errors import PiilabError
from piilab.io import DIGEST, id_key, row_digest

log = logging.getLogger(__name__)


def described(value) -> str:
    """A JSON value as an error names it: a number, boolean or null as written, anything else by
    its kind (a string may hold PII, and errors are logged)."""
    if value is None or isinstance(value, (bool, int, float)):
        return json.dumps(value)
    return {str: "a string", list: "an array", dict: "an object"}.get(type(value), "another type")


def is_offset(value) -> bool:
    """An integer character offset: JSON's true/false are ints to Python, and 5.0 is not one."""
    return isinstance(value, int) and not isinstance(value, bool)


def row_spans(items: list, where: str) -> tuple[list[list], list[str]]:
    """A found row's spans as [start, end, label], and each one's field (`items[0].spans[1]`).
    An item without a string label, or a span without integer offsets, is an error naming
    `where` (the file and line) and the field; the offsets are checked against the text later."""
    spans, fields = [], []
    for i, item in enumerate(items):
        if not isinstance(item, dict) or "label" not in item or not isinstance(item.get("spans"), list):
            raise PiilabError(f"{where}: items[{i}]: an item without 'label' or 'spans' "
                              "[{start, end}]")
        if not isinstance(item["label"], str):
            raise PiilabError(f"{where}: items[{i}].label: must be a string, not "
                              f"{described(item['label'])}")
        for j, span in enumerate(item["spans"]):
            field = f"items[{i}].spans[{j}]"
            if not isinstance(span, dict) or "start" not in span or "end" not in span:
                raise PiilabError(f"{where}: {field}: a span without 'start' and 'end'")
            for key in ("start", "end"):
                if not is_offset(span[key]):
                    raise PiilabError(f"{where}: {field}.{key}: must be an integer character "
                                      f"offset, not {described(span[key])}")
            spans.append([span["start"], span["end"], item["label"]])
            fields.append(field)
    return spans, fields


def offset_problem(start: int, end: int, length: int) -> str | None:
    """What is wrong with [start, end) as a span of a text of `length` characters, as
    'start: ...' or 'end: ...'; None when it is a span of it (0 <= start < end <= length)."""
    if not 0 <= start < length:
        return f"start: {start} is not in the text (0 <= start < {length})"
    if not 0 < end <= length:
        return f"end: {end} is not in the text (0 < end <= {length})"
    if end <= start:
        return f"end: {end} is not after start {start}"
    return None


def check_offsets(row: dict, text: str, where: str) -> None:
    """Refuse a row whose span lies outside its document's text: it would be scored as a
    miss and a false alarm, hiding that the file was not made from this text."""
    for (start, end, _), field in zip(row["spans"], row["fields"]):
        problem = offset_problem(start, end, len(text))
        if problem:
            raise PiilabError(f"{where}: {field}.{problem}")


def found_rows(path: Path) -> dict[str, dict]:
    """Per id (id_key), a found row's spans as [start, end, label], their fields, its line and
    its text's digest (None in a file of a piilab before the sixteenth session). A row without
    items, a label that is not a string or an offset that is not an integer is an error naming
    the line and the field."""
    from piilab.io import numbered_jsonl

    rows: dict[str, dict] = {}
    for line, row in numbered_jsonl(path):
        if isinstance(row, PiilabError):
            raise row
        if not isinstance(row, dict) or "id" not in row or not isinstance(row.get("items"), list):
            raise PiilabError(f"{path}: line {line}: not a row of `piilab extract --output` with "
                              "'id' and 'items' (one written with --redact has no items)")
        key = id_key(str(row["id"]))  # as the readers write a document's id: 7 is "7"
        if key in rows:
            raise PiilabError(f"{path}: line {line}: a second row for the id {key}")
        spans, fields = row_spans(row["items"], f"{path}: line {line}")
        rows[key] = {"spans": spans, "fields": fields, "digest": row.get(DIGEST), "line": line}
    return rows


def without_labels(rows: dict[str, dict], others: set[str]) -> tuple[dict[str, dict], int]:
    """The rows without their spans labelled one of `others`, and how many those were."""
    kept = {key: {**row, "spans": [span for span in row["spans"] if span[2] not in others]}
            for key, row in rows.items()}
    return kept, sum(len(rows[key]["spans"]) - len(kept[key]["spans"]) for key in rows)


def score_found(found: str | Path, gold: Sequence[str], *, labels: Sequence[str] | None = None,
                crosswalk: str | None = None, languages: Sequence[str] | None = None) -> dict:
    """Scores of the found file against the labelled documents of `gold` (FORMAT:PATH specs):
    span_scores.score_texts's, with `documents` (scored), `without_row`, `without_document` and
    `labels` (the set as resolved: upper-cased and checked; default the seven) and `set_aside`
    (found spans of a known label the set leaves out: `--labels NAME` scores the names of an
    extraction made with all seven, not its e-mail addresses as false alarms; a label no
    crosswalk knows still counts as a wrong prediction)."""
    from piilab.data.labelled import labelled_documents, log_kept, scoring_record
    from piilab.data.labels import CANONICAL, load_crosswalk, resolve_labels
    from piilab.eval.span_scores import score_texts

    # resolved once, so the gold, the scorer and the tables all see the same set ("name" -> NAME)
    walk = load_crosswalk(crosswalk)
    labels = resolve_labels(labels, walk)
    found = Path(found)
    rows = found_rows(found)
    tallies: dict = {}
    records, missing, seen = [], 0, {}  # seen: the documents' ids, in order
    for doc in labelled_documents(gold, tallies, crosswalk=crosswalk, labels=labels,
                                  languages=languages):
        key = id_key(doc.id)
        if key in seen:
            raise PiilabError(f"{' '.join(gold)}: two documents have the id {key}; `piilab "
                              "extract --output` refuses such an input, so no found file matches it")
        seen[key] = None
        row = rows.get(key)
        if row is None:
            missing += 1
            continue
        if row["digest"] is not None and row["digest"] != row_digest(doc.text):
            raise PiilabError(f"{found}: line {row['line']}: the row for {key} was found in "
                              "another text than the labelled document's (its input_digest differs)")
        check_offsets(row, doc.text, f"{found}: line {row['line']}")
        records.append(scoring_record(doc, key))
    log_kept(tallies)
    if not records:
        raise PiilabError(f"{found}: none of its rows has a labelled document in {' '.join(gold)} "
                          f"(its first id is {next(iter(rows), 'missing')}, theirs "
                          f"{next(iter(seen), 'missing')}: are they the same data? `piilab extract "
                          "--input FORMAT:PATH` keeps a labelled file's ids)")
    without_document = len(rows) - len(records)
    if missing or without_document:
        log.warning("%s: %d labelled documents have no row (not scored); %d rows have no labelled "
                    "document", found, missing, without_document)
    others = (set(CANONICAL) | walk.targets()) - set(labels)
    scored, taken = without_labels({r["id"]: rows[r["id"]] for r in records}, others)
    if taken:
        log.info("%d found spans of labels outside %s set aside (not scored)", taken, ",".join(labels))
    scores = score_texts(records, scored, labels)
    scores.pop("texts_per_s")  # a found file holds no timings
    return {**scores, "labels": list(labels), "set_aside": taken, "documents": len(records),
            "without_row": missing, "without_document": without_document,
            "left_out": dict(sum((t.skipped for t in tallies.values()), Counter())),
            "sources_texts": dict(Counter(r["source"] for r in records))}
