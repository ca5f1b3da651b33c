"""`piilab eval --second-look/--validators`: PII records scored as `piilab extract` finds them."""

from __future__ import annotations

import json

import pytest
from helpers import one_line_error

from piilab.cli import main
from piilab.data.instruct import build_record
from piilab.data.records import Document, Span
from piilab.eval import metrics
from piilab.eval.as_extract import found_answer, settings_for
from piilab.eval.config import EvalConfig
from piilab.extract import Extraction, extract
from piilab.layers.decode import Decoding
from piilab.models import load_model

pytestmark = pytest.mark.usefixtures("one_thread")

TEXTS = ["Write to jane.doe@example.com or call Jane Doe.", "Omar paid with IBAN GB82WEST12345698765432.",
         "Nothing personal here."]
LABELS = ("EMAIL", "ID_NUM")  # two, so that prompts fit the tiny model's 256 tokens
ALPACA = {"id": "alpaca", "source": "alpaca", "prompt": "Name a colour.", "completion": "Blue.",
          "text": "", "spans": None}


def pii_record(i: int, text: str) -> dict:
    email = "jane.doe@example.com"
    spans = [Span(text.index(email), text.index(email) + len(email), "EMAIL", email)] \
        if email in text else []
    return build_record(Document(f"t{i}", text, spans, source="test"), labels=LABELS)


@pytest.fixture
def data_dir(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    rows = [pii_record(i, text) for i, text in enumerate(TEXTS)] + [ALPACA]
    (folder / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "card.json").write_text(json.dumps({"prompt_style": "default", "labels": LABELS}))
    return folder


def eval_args(model_dir, data_dir, out, *extra):
    return ["eval", "--model", str(model_dir), "--layers", "2,4", "--data", str(data_dir),
            "--out", str(out), "--metrics", "bleu,rouge,pii", "--max-new-tokens", "12",
            "--batch-size", "2", "--device", "cpu", *extra]


def outputs(out, layer: int) -> dict[str, str]:
    results = json.loads((out / "results.json").read_text())
    [run] = [run for run in results["runs"] if run["layer"] == layer]
    return {row["id"]: row["output"] for row in map(json.loads, (out / run["outputs"]).read_text().splitlines())}


def test_found_answer_lists_the_placed_items_in_text_order_each_on_one_line():
    text = "Call Jane Doe at 12 Oak Street,\nSpringfield."
    found = Extraction(text, 4, [], items=[
        {"value": "12 Oak Street,\nSpringfield", "label": "STREET_ADDRESS", "spans": [{"start": 17, "end": 43}]},
        {"value": "Jane Doe", "label": "NAME", "spans": [{"start": 5, "end": 13}]}],
        invented=[{"value": "John Roe", "label": "NAME"}])
    assert found_answer(found) == "Jane Doe (NAME)\n12 Oak Street, Springfield (STREET_ADDRESS)"
    assert found_answer(Extraction(text, 4, [])) == "None"


def test_eval_as_extract_scores_what_extract_finds_and_decodes_instruction_rows_as_before(
        tiny_llama_dir, data_dir, tmp_path):
    plain, found = tmp_path / "plain", tmp_path / "found"
    assert main(eval_args(tiny_llama_dir, data_dir, plain)) == 0
    assert main(eval_args(tiny_llama_dir, data_dir, found, "--second-look", "0.05",
                          "--validators", "extend,check,complete")) == 0
    model, tokenizer = load_model(str(tiny_llama_dir), device="cpu")
    settings = settings_for(data_dir, LABELS)
    results = json.loads((found / "results.json").read_text())
    for layer in (2, 4):
        direct = extract(model, tokenizer, TEXTS, layer=layer, settings=settings, second_look=0.05,
                         validators=("extend", "check", "complete"), progress=False,
                         decoding=Decoding(max_new_tokens=12))
        got = outputs(found, layer)
        assert [got[f"t{i}"] for i in range(3)] == [found_answer(one) for one in direct]
        # the validators' "complete" adds the shaped values a random model does not copy
        assert "jane.doe@example.com (EMAIL)" in got["t0"] and "GB82WEST12345698765432 (ID_NUM)" in got["t1"]
        assert "jane.doe@example.com (EMAIL)" not in outputs(plain, layer)["t0"]
        assert got["alpaca"] == outputs(plain, layer)["alpaca"]  # decoded as without the options
        [run] = [run for run in results["runs"] if run["layer"] == layer]
        assert run["as_extract"] == {"second_look": 0.05, "validators": ["extend", "check", "complete"]}
        rows = [json.loads(line) for line in (found / run["outputs"]).read_text().splitlines()]
        direct_scores = metrics.score([row["output"] for row in rows], [row["reference"] for row in rows],
                                      metrics=("bleu", "rouge", "pii"))
        assert run["scores"] == pytest.approx(direct_scores.scores)
    assert "as_extract" not in json.loads((plain / "results.json").read_text())["runs"][0]


def test_eval_as_extract_refuses_prompts_extract_would_not_write_and_keeps_folders_apart(
        tiny_llama_dir, data_dir, tmp_path, capsys):
    out = tmp_path / "eval"
    assert main(eval_args(tiny_llama_dir, data_dir, out, "--validators", "check")) == 0
    one_line_error(capsys, eval_args(tiny_llama_dir, data_dir, out), "(validators differ)")
    one_line_error(capsys, eval_args(tiny_llama_dir, data_dir, tmp_path / "e2", "--second-look", "0.05",
                                     "--free-decoding"), "--second-look needs greedy, copy-constrained")
    one_line_error(capsys, eval_args(tiny_llama_dir, data_dir, tmp_path / "e3", "--validators", "guess"),
                   "--validators: unknown guess")
    test = data_dir / "test.jsonl"
    rows = [json.loads(line) for line in test.read_text().splitlines()]
    rows[1]["prompt"] = "Find PII: " + rows[1]["text"]
    test.write_text("".join(json.dumps(r) + "\n" for r in rows))
    one_line_error(capsys, eval_args(tiny_llama_dir, data_dir, tmp_path / "e4", "--validators", "check"),
                   "record 't1': its prompt is not the one `piilab extract` writes")
    assert not (tmp_path / "e4" / "outputs").exists()  # refused before anything was decoded


def test_eval_settings_without_the_options_are_those_of_earlier_folders():
    plain = EvalConfig(models=[{"spec": "m"}], data="d", out="o")
    assert not {"second_look", "validators"} & set(plain.identity())
    found = EvalConfig(models=[{"spec": "m"}], data="d", out="o", second_look=0.1, validators=["check"])
    assert found.identity()["second_look"] == 0.1 and found.identity()["validators"] == ["check"]
    spelled = EvalConfig(models=[{"spec": "m"}], data="d", out="o", validators="extend, check")
    assert spelled.validators == ("extend", "check")  # as an experiment file may write them
    plus = EvalConfig(models=[{"spec": "m"}], data="d", out="o", validators="+postal")
    assert plus.validators == ("extend", "check", "complete", "mailbox", "lists", "postal")


def test_second_look_auto_is_each_models_own_threshold(tmp_path, tiny_llama_dir, data_dir, capsys):
    from piilab.eval.as_extract import threshold_of
    from piilab.second_look import THRESHOLD, save_threshold

    save_threshold(tmp_path, 0.2)
    assert threshold_of("auto", tmp_path) == 0.2  # the adapter's extract_defaults.json
    assert threshold_of("auto", None) == THRESHOLD and threshold_of(0.1, tmp_path) == 0.1
    assert EvalConfig(models=[{"spec": "m"}], data="d", out="o", second_look="auto").as_extract
    with pytest.raises(SystemExit):  # argparse's usage error
        main(eval_args(tiny_llama_dir, data_dir, tmp_path / "e", "--second-look", "some"))
    assert "--second-look: a probability or auto, not 'some'" in capsys.readouterr().err
    out = tmp_path / "auto"
    assert main(eval_args(tiny_llama_dir, data_dir, out, "--second-look", "auto")) == 0
    runs = json.loads((out / "results.json").read_text())["runs"]
    assert {run["as_extract"]["second_look"] for run in runs} == {THRESHOLD}  # a model of no adapter
    assert json.loads((out / "eval_config.json").read_text())["second_look"] == "auto"
