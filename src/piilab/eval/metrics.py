"""Scores for model outputs against reference answers (design.md, "Scores"; docs/metrics.md).

Text metrics: BLEU (sacreBLEU sentence average and corpus score, or the original experiment's
nltk variant), ROUGE-L (rouge-score, stemming) and BERTScore F1 (one encoder loaded once).
PII metrics: micro and per-label precision, recall, F1 and F5 over normalised (value, label)
pairs, and label-agnostic value F1. Every aggregate can carry a percentile bootstrap interval.

Everything here is a pure function of the texts except `BertScore`, which holds the encoder.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from piilab.errors import PiilabError
from piilab.eval.bertscore import BertScore
from piilab.eval.pii_metrics import (
    PiiCounts,
    count_columns,
    is_degenerate,
    pii_counts,
    pii_micro,
    pii_per_label,
    pii_scores_from_sums,
)
from piilab.eval.text_metrics import (
    bleu_from_stats,
    bleu_signatures,
    check_bleu_variant,
    rouge_l_scores,
    sacrebleu_stats,
    sentence_bleu_scores,
)

logger = logging.getLogger(__name__)

METRICS = ("bleu", "rouge", "bertscore", "pii")


# --------------------------------------------------------------------------- bootstrap


def bootstrap_indices(n_samples: int, n_resamples: int, seed: int = 0) -> np.ndarray:
    """(n_resamples, n_samples) indices drawn with replacement by numpy's default_rng(seed)."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, n_samples, size=(n_resamples, n_samples))


def percentile_interval(values: np.ndarray, level: float = 0.95) -> list[float]:
    """The percentile-method interval [lo, hi] of bootstrap replicates (linear interpolation)."""
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(np.asarray(values, dtype=float), [tail, 100 - tail])
    return [float(lo), float(hi)]


def mean_interval(per_sample: Sequence[float], indices: np.ndarray) -> list[float]:
    """Bootstrap interval of a mean of per-sample scores."""
    return percentile_interval(np.asarray(per_sample, dtype=float)[indices].mean(axis=1))


def pii_intervals(counts: PiiCounts, indices: np.ndarray) -> dict[str, list[float]]:
    """Bootstrap intervals of the micro PII scores, each recomputed from resampled count sums."""
    sums = np.stack([col[indices].sum(axis=1) for col in count_columns(counts)], axis=1)
    replicates = [pii_scores_from_sums(*row) for row in sums.tolist()]
    return {key: percentile_interval([r[key] for r in replicates]) for key in replicates[0]}


def corpus_bleu_interval(stats: np.ndarray, indices: np.ndarray) -> list[float]:
    """Bootstrap interval of corpus BLEU, recomputed from resampled statistic sums."""
    sums = stats[indices].sum(axis=1)  # (R, 10)
    return percentile_interval([bleu_from_stats(row, sentence=False) for row in sums])


# --------------------------------------------------------------------------- one entry point


@dataclass
class Scores:
    """What `score` returns: the aggregates and everything needed to explain them."""

    scores: dict[str, float]
    """"BLEU", "BLEU-corpus", "ROUGE-L", "BERTScore", "PII-P", ..., "degenerate" (all 0-1)."""
    intervals: dict[str, list[float]]
    """key -> [lo, hi] bootstrap 95% interval; empty without bootstrap."""
    per_label: dict[str, dict[str, Any]]
    """label -> {"P", "R", "F1", "F5", "support", "predicted"}."""
    per_sample: list[dict[str, Any]]
    """One row per pair: its sentence scores, PII counts, malformed lines, degenerate flag."""
    counts: dict[str, int]
    """"samples", "malformed_lines", "outputs_with_malformed", "tp", "fp", "fn", "degenerate"."""

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict."""
        return {
            "scores": self.scores, "intervals": self.intervals, "per_label": self.per_label,
            "per_sample": self.per_sample, "counts": self.counts,
        }


def check_metrics(metrics: Iterable[str] | str) -> tuple[str, ...]:
    """Validate a `--metrics` selection (a list, or a comma-separated string as on the command
    line); unknown names are a one-line error."""
    if isinstance(metrics, str):  # "bleu,rouge", not the letters b, l, e, u...
        metrics = [m.strip() for m in metrics.split(",") if m.strip()]
    metrics = tuple(metrics)
    unknown = [str(m) for m in metrics if m not in METRICS]
    if unknown:
        raise PiilabError(
            f"unknown metric(s) {', '.join(unknown)}; choose from {', '.join(METRICS)}"
        )
    return metrics


def score(
    outputs: Sequence[str],
    references: Sequence[str],
    metrics: Iterable[str] = METRICS,
    bleu: str = "sacrebleu",
    bertscorer: BertScore | None = None,
    labels: Iterable[str] = (),
    label_set: Iterable[str] | None = None,
    bootstrap: int = 0,
    seed: int = 0,
) -> Scores:
    """Score outputs against references with the chosen metrics (docs/metrics.md).

    `bertscorer` should be built once per run and passed to every call; without one, the
    default encoder is loaded for this call. `labels` are listed in the per-label table even
    when unseen. Given the prompts' `label_set`, an output line naming a label outside it is
    malformed, not an item (design.md, "Answer format"). `bootstrap` > 0 adds 95% intervals
    from that many resamples of the samples, seeded by `seed`. The degenerate share is always
    computed.
    """
    metrics = check_metrics(metrics)
    check_bleu_variant(bleu)
    if len(outputs) != len(references):
        raise ValueError(f"{len(outputs)} outputs but {len(references)} references")
    if not outputs:
        raise ValueError("nothing to score: no outputs")
    outputs, references = list(outputs), list(references)
    n = len(outputs)
    start = time.perf_counter()
    timings: dict[str, float] = {}
    per_sample_cols: dict[str, list] = {}
    scores: dict[str, float] = {}
    intervals: dict[str, list[float]] = {}
    indices = bootstrap_indices(n, bootstrap, seed) if bootstrap > 0 else None

    def add_mean(key: str, values: list) -> None:
        per_sample_cols[key] = values
        scores[key] = float(np.mean(values))
        if indices is not None:
            intervals[key] = mean_interval(values, indices)

    if "bleu" in metrics:
        t = time.perf_counter()
        stats = sacrebleu_stats(outputs, references)
        add_mean("BLEU", sentence_bleu_scores(outputs, references, bleu, stats=stats))
        scores["BLEU-corpus"] = bleu_from_stats(stats.sum(axis=0), sentence=False)
        if indices is not None:
            intervals["BLEU-corpus"] = corpus_bleu_interval(stats, indices)
        timings["bleu"] = time.perf_counter() - t
    if "rouge" in metrics:
        t = time.perf_counter()
        add_mean("ROUGE-L", rouge_l_scores(outputs, references))
        timings["rouge"] = time.perf_counter() - t
    if "bertscore" in metrics:
        t = time.perf_counter()
        if bertscorer is None:
            logger.info("no BERTScore encoder passed; loading the default for this call")
            bertscorer = BertScore()
        add_mean("BERTScore", bertscorer(outputs, references))
        timings["bertscore"] = time.perf_counter() - t

    per_label: dict[str, dict[str, Any]] = {}
    counts: dict[str, int] = {"samples": n}
    pii = pii_counts(outputs, references, label_set) if "pii" in metrics else None
    if pii is not None:
        scores.update(pii_micro(pii))
        if indices is not None:
            intervals.update(pii_intervals(pii, indices))
        per_label = pii_per_label(pii, labels)
        counts.update(
            malformed_lines=int(pii.malformed.sum()),
            outputs_with_malformed=int((pii.malformed > 0).sum()),
            tp=int(pii.tp.sum()), fp=int(pii.fp.sum()), fn=int(pii.fn.sum()),
        )
        per_sample_cols.update(
            tp=pii.tp.tolist(), fp=pii.fp.tolist(), fn=pii.fn.tolist(),
            malformed=pii.malformed.tolist(),
        )

    degenerate = [is_degenerate(o) for o in outputs]
    add_mean("degenerate", [float(d) for d in degenerate])
    per_sample_cols["degenerate"] = degenerate
    counts["degenerate"] = sum(degenerate)

    per_sample = [dict(zip(per_sample_cols, row)) for row in zip(*per_sample_cols.values())]
    elapsed = time.perf_counter() - start
    logger.info(
        "scored %d pairs in %.2fs (%.0f pairs/s): %s",
        n, elapsed, n / elapsed if elapsed else math.inf,
        ", ".join(f"{k} {v:.2f}s" for k, v in timings.items()),
    )
    return Scores(scores, intervals, per_label, per_sample, counts)


def metrics_info(bleu: str = "sacrebleu", bertscorer: BertScore | None = None) -> dict[str, Any]:
    """The "metrics" block of results.json: encoder name and hash, BLEU signatures."""
    sentence, corpus = bleu_signatures(bleu)
    return {
        "bertscore_model": bertscorer.name if bertscorer is not None else None,
        "bertscore_hash": bertscorer.hash if bertscorer is not None else None,
        "bleu_signature": sentence,
        "bleu_corpus_signature": corpus,
    }
