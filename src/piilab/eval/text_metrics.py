"""BLEU (sacreBLEU, or the original experiment's nltk variant) and ROUGE-L (rouge-score, stemming)."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from functools import lru_cache

import numpy as np

from piilab.errors import PiilabError

logger = logging.getLogger(__name__)


BLEU_VARIANTS = ("sacrebleu", "nltk")
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
