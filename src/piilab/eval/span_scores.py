"""Character-span scores for PII found in raw text: exact-match and token-level P/R/F1, per label.

Used by `piilab score` and benchmarks/real_text.py, so piilab and Presidio are scored alike
(docs/evaluation.md).
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

# Tokens as the token-level score counts them: runs of word characters, or single other
# non-space characters. presidio-research's evaluator tags spaCy tokens; this regex splits
# "jane.doe@x.org" into 7 tokens where spaCy keeps 1, so token counts differ from its, but the
# counting rule (below) is the same.
_TOKEN = re.compile(r"\w+|[^\w\s]")

# Presidio's entity types -> piilab's labels. Types absent here (LOCATION, DATE_TIME, NRP,
# IP_ADDRESS, CRYPTO, ORGANIZATION, ...) map to nothing: none is one of the seven labels.
PRESIDIO_TO_PIILAB: dict[str, str] = {
    "PERSON": "NAME",
    "EMAIL_ADDRESS": "EMAIL",
    "PHONE_NUMBER": "PHONE_NUM",
    "URL": "URL_PERSONAL",
    **{kind: "ID_NUM" for kind in (
        "US_SSN", "US_DRIVER_LICENSE", "US_PASSPORT", "US_BANK_NUMBER", "US_ITIN", "CREDIT_CARD",
        "IBAN_CODE", "UK_NHS", "UK_NINO", "MEDICAL_LICENSE", "ES_NIF", "ES_NIE", "IT_FISCAL_CODE",
        "IT_DRIVER_LICENSE", "IT_VAT_CODE", "IT_PASSPORT", "IT_IDENTITY_CARD", "PL_PESEL",
        "SG_NRIC_FIN", "SG_UEN", "AU_ABN", "AU_ACN", "AU_TFN", "AU_MEDICARE", "IN_PAN",
        "IN_AADHAAR", "IN_VEHICLE_REGISTRATION", "IN_VOTER", "IN_PASSPORT", "FI_PERSONAL_IDENTITY_CODE",
        "KR_RRN", "TH_TNIN")},
}


@dataclass(frozen=True, order=True)
class SpanPred:
    """One labelled character span: [start, end) in a text."""

    start: int
    end: int
    label: str


def map_presidio(entity_type: str) -> str | None:
    """piilab's label for a Presidio entity type, or None when it has none."""
    return PRESIDIO_TO_PIILAB.get(entity_type)


def drop_nested(spans: Iterable[SpanPred]) -> list[SpanPred]:
    """Unique spans, without any that lies inside a longer one (a URL found inside an email).

    Applied to every system's predictions alike, so a tool is not charged twice for one item.
    """
    unique = sorted(set(spans), key=lambda s: (s.start, -(s.end - s.start), s.label))
    kept: list[SpanPred] = []
    for span in unique:
        if any(k.start <= span.start and span.end <= k.end and (k.end - k.start) > (span.end - span.start)
               for k in kept):
            continue
        kept.append(span)
    return sorted(kept)


@dataclass
class Tally:
    """True positives, predictions and gold items, overall and per label."""

    tp: Counter = field(default_factory=Counter)
    pred: Counter = field(default_factory=Counter)
    gold: Counter = field(default_factory=Counter)

    def add(self, other: Tally) -> None:
        self.tp.update(other.tp)
        self.pred.update(other.pred)
        self.gold.update(other.gold)

    def prf(self, label: str | None = None) -> tuple[float, float, float]:
        """(precision, recall, F1) for one label, or micro over all labels when label is None."""
        if label is None:
            tp, pred, gold = (sum(c.values()) for c in (self.tp, self.pred, self.gold))
        else:
            tp, pred, gold = self.tp[label], self.pred[label], self.gold[label]
        return prf(tp, pred, gold)


def prf(tp: int, pred: int, gold: int) -> tuple[float, float, float]:
    """Precision, recall, F1; a ratio with a zero denominator is 0 (nothing found, nothing to find)."""
    p = tp / pred if pred else 0.0
    r = tp / gold if gold else 0.0
    return p, r, (2 * p * r / (p + r) if p + r else 0.0)


def exact_tally(gold: Sequence[SpanPred], pred: Sequence[SpanPred]) -> Tally:
    """Exact match: a prediction counts only with the gold span's start, end and label."""
    gold_set, pred_set = set(gold), set(pred)
    tally = Tally()
    tally.gold.update(s.label for s in gold_set)
    tally.pred.update(s.label for s in pred_set)
    tally.tp.update(s.label for s in gold_set & pred_set)
    return tally


def tokens(text: str) -> list[tuple[int, int]]:
    """(start, end) of each token the token-level score counts."""
    return [(m.start(), m.end()) for m in _TOKEN.finditer(text)]


def token_tags(text: str, spans: Sequence[SpanPred]) -> list[str]:
    """One tag per token: the label of the span it overlaps (the first one), else 'O'."""
    ordered = sorted(spans)
    tags = []
    for start, end in tokens(text):
        tag = "O"
        for span in ordered:
            if span.start < end and start < span.end:
                tag = span.label
                break
        tags.append(tag)
    return tags


def token_tally(text: str, gold: Sequence[SpanPred], pred: Sequence[SpanPred]) -> Tally:
    """Token level, label-aware, as presidio-research's evaluator counts: a token is a true
    positive of label L when both gold and prediction tag it L; every token the prediction tags
    L is a prediction of L, every token gold tags L is a gold item of L ('O' is never counted)."""
    tally = Tally()
    for g, p in zip(token_tags(text, gold), token_tags(text, pred)):
        if g != "O":
            tally.gold[g] += 1
        if p != "O":
            tally.pred[p] += 1
        if g == p != "O":
            tally.tp[g] += 1
    return tally


def score_texts(records: Sequence[dict], predictions: dict, labels: Sequence[str]) -> dict:
    """Exact and token tallies per source and over "all", items per 100 PII-free texts, spans
    with a label outside `labels`, and texts/s. `records`: {id, source, text, spans: [{start,
    end, label}]}; `predictions`: per id, {spans: [[start, end, label], ...], seconds (optional)}."""
    by_source: dict[str, dict[str, Tally]] = defaultdict(lambda: {"exact": Tally(), "token": Tally()})
    free_items = free_texts = outside = 0
    seconds = 0.0
    for record in records:
        row = predictions[record["id"]]
        gold = [SpanPred(s["start"], s["end"], s["label"]) for s in record["spans"]]
        pred = drop_nested(SpanPred(*s) for s in row["spans"])
        outside += sum(s.label not in labels for s in pred)
        seconds += row.get("seconds", 0.0)
        for key in (record["source"], "all"):
            by_source[key]["exact"].add(exact_tally(gold, pred))
            by_source[key]["token"].add(token_tally(record["text"], gold, pred))
        if not gold:
            free_texts += 1
            # items, not spans: one value named twice in a text is one false alarm
            free_items += len({(record["text"][s.start:s.end], s.label) for s in pred})
    return {
        "sources": by_source,
        "fp_per_100_free": 100 * free_items / free_texts if free_texts else 0.0,
        "free_texts": free_texts,
        "outside_label_set": outside,
        "texts_per_s": len(records) / seconds if seconds else None,
    }


def summary(scores: dict) -> dict:
    """The JSON-ready form of `score_texts`'s result."""
    def tally_dict(tally: Tally) -> dict:
        out = {"micro": dict(zip("prf", tally.prf())),
               "tp": sum(tally.tp.values()), "pred": sum(tally.pred.values()), "gold": sum(tally.gold.values())}
        out["per_label"] = {label: dict(zip("prf", tally.prf(label)), gold=tally.gold[label])
                            for label in sorted(set(tally.gold) | set(tally.pred))}
        return out

    return {**{k: v for k, v in scores.items() if k != "sources"},
            "sources": {src: {kind: tally_dict(t) for kind, t in pair.items()}
                        for src, pair in scores["sources"].items()}}
