"""PII scores: micro and per-label precision, recall, F1 and F5 over normalised (value, label) pairs."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from piilab.data.answer import normalize_value, parse_answer_counted

logger = logging.getLogger(__name__)


F_BETA = 5.0  # the Kaggle PII competition's beta: recall weighs beta^2 = 25 times precision

# --------------------------------------------------------------------------- degenerate outputs


def is_degenerate(text: str) -> bool:
    """True if `text` is empty or one unit repeated (docs/metrics.md, "Degenerate outputs").

    With all whitespace deleted, the text is empty or two or more copies of one shorter string:
    "the the the", "!!!!", "ĠĠĠĠ", "abab". Case-sensitive; "None" is not degenerate.
    """
    squeezed = "".join(text.split())
    # a string is a repetition of a shorter one iff it occurs inside itself doubled, ends cut
    return not squeezed or squeezed in (squeezed + squeezed)[1:-1]


# --------------------------------------------------------------------------- PII


def answer_items(text: str, labels: Collection[str] | None = None
                 ) -> tuple[frozenset[tuple[str, str]], int]:
    """The set of normalised (value, label) pairs in an answer, and its malformed-line count
    (a line whose label is outside `labels`, when given, is malformed)."""
    items, malformed = parse_answer_counted(text, labels)
    return frozenset((normalize_value(v), label) for v, label in items), malformed


def prf(tp: float, fp: float, fn: float, beta: float = 1.0) -> tuple[float, float, float]:
    """Precision, recall and F-beta from counts; any 0/0 is 0 (seqeval, the Kaggle metric)."""
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    b2 = beta * beta
    denom = b2 * precision + recall
    fbeta = (1 + b2) * precision * recall / denom if denom else 0.0
    return precision, recall, fbeta


@dataclass
class PiiCounts:
    """Per-sample match counts: the sufficient statistics of every PII score."""

    tp: np.ndarray
    """(N,) (value, label) pairs both predicted and expected."""
    fp: np.ndarray
    """(N,) pairs predicted but not expected."""
    fn: np.ndarray
    """(N,) pairs expected but not predicted."""
    value_tp: np.ndarray
    """(N,) as `tp`, over values alone (label ignored)."""
    value_fp: np.ndarray
    value_fn: np.ndarray
    malformed: np.ndarray
    """(N,) malformed lines in each output."""
    per_label: dict[str, Counter] = field(default_factory=dict)
    """label -> Counter(tp=, fp=, fn=) summed over samples."""


def pii_counts(outputs: Sequence[str], references: Sequence[str],
               labels: Collection[str] | None = None) -> PiiCounts:
    """Match each output's (value, label) set against its reference's, sample by sample.

    With the label set, an output line whose label is outside it is malformed, not an item.
    """
    rows = []
    per_label: dict[str, Counter] = {}
    labels = frozenset(labels) if labels else None
    for output, reference in zip(outputs, references):
        pred, malformed = answer_items(output, labels)
        gold, _ = answer_items(reference)
        pred_values = {v for v, _ in pred}
        gold_values = {v for v, _ in gold}
        rows.append((
            len(pred & gold), len(pred - gold), len(gold - pred),
            len(pred_values & gold_values), len(pred_values - gold_values),
            len(gold_values - pred_values), malformed,
        ))
        for kind, pairs in (("tp", pred & gold), ("fp", pred - gold), ("fn", gold - pred)):
            for _, label in pairs:
                per_label.setdefault(label, Counter())[kind] += 1
    cols = np.asarray(rows, dtype=np.int64).reshape(-1, 7).T
    return PiiCounts(*cols, per_label=per_label)


def pii_scores_from_sums(
    tp: float, fp: float, fn: float, value_tp: float, value_fp: float, value_fn: float
) -> dict[str, float]:
    """Micro PII scores from counts summed over samples."""
    p, r, f1 = prf(tp, fp, fn)
    f5 = prf(tp, fp, fn, beta=F_BETA)[2]
    value_f1 = prf(value_tp, value_fp, value_fn)[2]
    return {"PII-P": p, "PII-R": r, "PII-F1": f1, "PII-F5": f5, "PII-value-F1": value_f1}


def pii_micro(counts: PiiCounts) -> dict[str, float]:
    """Micro precision, recall, F1, F5 and value F1 over all samples."""
    return pii_scores_from_sums(*(int(a.sum()) for a in count_columns(counts)))


def count_columns(counts: PiiCounts) -> tuple[np.ndarray, ...]:
    return counts.tp, counts.fp, counts.fn, counts.value_tp, counts.value_fp, counts.value_fn


def pii_per_label(counts: PiiCounts, labels: Iterable[str] = ()) -> dict[str, dict[str, Any]]:
    """P, R, F1, F5, support (expected) and predicted counts for each label.

    Lists every label in `labels` (even unseen) and every label seen in outputs or references,
    so a label the model invents shows up with support 0.
    """
    table = {}
    for label in sorted(set(labels) | set(counts.per_label)):
        c = counts.per_label.get(label, Counter())
        p, r, f1 = prf(c["tp"], c["fp"], c["fn"])
        table[label] = {
            "P": p, "R": r, "F1": f1, "F5": prf(c["tp"], c["fp"], c["fn"], beta=F_BETA)[2],
            "support": c["tp"] + c["fn"], "predicted": c["tp"] + c["fp"],
        }
    return table
