"""`piilab score`: what `piilab extract --output` found, scored against labelled data.

The found file's rows are matched to the labelled documents by id (extract gives a `FORMAT:PATH`
input's documents the ids the reader gives them, as here). A row holds the digest of the text it
was searched in (`input_digest`): a row made from another text than the document's is an error,
not a score. Each text is scored by `piilab.eval.span_scores` (exact match and token level, per
label and per source, items per 100 PII-free texts), as benchmarks/real_text.py scores piilab
and Presidio. Documents without a row and rows without a document are counted and reported,
never scored as misses or false alarms.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from piilab.errors import PiilabError
from piilab.io import DIGEST, id_key, row_digest

log = logging.getLogger(__name__)


def found_rows(path: Path) -> dict[str, dict]:
    """Per id (id_key), a found row's spans as [start, end, label] and its text's digest (None
    in a file of a piilab before the sixteenth session). A row without items is an error that
    names the line."""
    from piilab.io import numbered_jsonl

    rows: dict[str, dict] = {}
    for line, row in numbered_jsonl(path):
        if isinstance(row, PiilabError):
            raise row
        if not isinstance(row, dict) or "id" not in row or not isinstance(row.get("items"), list):
            raise PiilabError(f"{path}: line {line}: not a row of `piilab extract --output` with "
                              "'id' and 'items' (one written with --redact has no items)")
        key = id_key(row["id"])
        if key in rows:
            raise PiilabError(f"{path}: line {line}: a second row for the id {key}")
        try:
            spans = [[s["start"], s["end"], item["label"]] for item in row["items"] for s in item["spans"]]
        except (KeyError, TypeError):
            raise PiilabError(f"{path}: line {line}: an item without 'label' or 'spans' "
                              "[{start, end}]") from None
        rows[key] = {"spans": spans, "digest": row.get(DIGEST), "line": line}
    return rows


def score_found(found: str | Path, gold: Sequence[str], *, labels: Sequence[str] | None = None,
                crosswalk: str | None = None, languages: Sequence[str] | None = None) -> dict:
    """Scores of the found file against the labelled documents of `gold` (FORMAT:PATH specs):
    span_scores.score_texts's, with `documents` (scored), `without_row`, `without_document` and
    `labels` (the set as resolved: upper-cased and checked; default the seven)."""
    from piilab.data.labelled import labelled_documents, log_kept, scoring_record
    from piilab.data.labels import load_crosswalk, resolve_labels
    from piilab.eval.span_scores import score_texts

    # resolved once, so the gold, the scorer and the tables all see the same set ("name" -> NAME)
    labels = resolve_labels(labels, load_crosswalk(crosswalk))
    found = Path(found)
    rows = found_rows(found)
    tallies: dict = {}
    records, missing, seen = [], 0, set()
    for doc in labelled_documents(gold, tallies, crosswalk=crosswalk, labels=labels,
                                  languages=languages):
        key = id_key(doc.id)
        if key in seen:
            raise PiilabError(f"{' '.join(gold)}: two documents have the id {key}; `piilab "
                              "extract --output` refuses such an input, so no found file matches it")
        seen.add(key)
        row = rows.get(key)
        if row is None:
            missing += 1
            continue
        if row["digest"] is not None and row["digest"] != row_digest(doc.text):
            raise PiilabError(f"{found}: line {row['line']}: the row for {key} was found in "
                              "another text than the labelled document's (its input_digest differs)")
        records.append(scoring_record(doc, key))
    log_kept(tallies)
    if not records:
        raise PiilabError(f"{found}: none of its rows has a labelled document in {' '.join(gold)} "
                          "(are they the same data?)")
    without_document = len(rows) - len(records)
    if missing or without_document:
        log.warning("%s: %d labelled documents have no row (not scored); %d rows have no labelled "
                    "document", found, missing, without_document)
    scores = score_texts(records, {r["id"]: rows[r["id"]] for r in records}, labels)
    scores.pop("texts_per_s")  # a found file holds no timings
    return {**scores, "labels": list(labels), "documents": len(records), "without_row": missing,
            "without_document": without_document,
            "sources_texts": dict(Counter(r["source"] for r in records))}
