"""piilab eval refuses bad settings and odd test records up front, with one line naming them,
and a refused eval leaves nothing that refuses the corrected command."""

from __future__ import annotations

import json

import pytest
from helpers import one_line_error

from piilab.cli import main
from piilab.errors import PiilabError
from piilab.eval import run as ev

pytestmark = pytest.mark.usefixtures("one_thread")

RECORD = {"id": "r0", "source": "synthetic", "prompt": "Find PII: Jane Doe wrote.",
          "completion": "Jane Doe (NAME)", "text": "Jane Doe wrote.", "spans": None}
FAST = ["--metrics", "bleu,rouge,pii", "--batch-size", "2", "--device", "cpu", "--limit", "1"]


def write_records(path, *records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def eval_argv(model, data, out, *extra):
    return ["eval", "--model", str(model), "--layers", "2", "--data", str(data), "--out", str(out),
            *FAST, *extra]


@pytest.mark.parametrize(("bad", "message"), [
    (["--max-new-tokens", "0"], "decoding: max_new_tokens must be at least 1"),
    (["--lens", "foo"], "unknown lens 'foo'"),
    (["--lens", "tuned:nowhere"], "nowhere is not a tuned lens folder"),
])
def test_a_refused_setting_leaves_the_folder_open_to_the_corrected_command(
        tiny_llama_dir, tmp_path, capsys, bad, message):
    data, out = write_records(tmp_path / "test.jsonl", RECORD), tmp_path / "eval"
    one_line_error(capsys, eval_argv(tiny_llama_dir, data, out, *bad), message)
    assert not (out / ev.CONFIG_FILE).exists()  # checked before the folder is stamped
    assert main(eval_argv(tiny_llama_dir, data, out, "--max-new-tokens", "2")) == 0


def test_settings_alone_of_a_stopped_eval_do_not_refuse_another(tiny_llama_dir, tmp_path):
    """A folder whose eval stopped before decoding anything (a tuned lens for another model, say)
    holds no results: the next eval takes it over instead of asking for --overwrite."""
    data, out = write_records(tmp_path / "test.jsonl", RECORD), tmp_path / "eval"
    out.mkdir()
    (out / ev.CONFIG_FILE).write_text(json.dumps({"lens": "raw", "layers": [3]}))
    assert main(eval_argv(tiny_llama_dir, data, out, "--max-new-tokens", "2")) == 0
    assert json.loads((out / ev.CONFIG_FILE).read_text())["layers"] == [2]


def test_metrics_are_a_list_or_a_comma_string_and_never_empty(tiny_llama_dir, tmp_path, capsys):
    from piilab.eval.config import EvalConfig

    assert EvalConfig(models=[{"spec": "m"}], data="d", out="o", metrics="bleu, rouge").metrics == (
        "bleu", "rouge")
    with pytest.raises(PiilabError, match="choose at least one of bleu"):
        EvalConfig(models=[{"spec": "m"}], data="d", out="o", metrics=())
    data = write_records(tmp_path / "test.jsonl", RECORD)
    one_line_error(capsys, eval_argv(tiny_llama_dir, data, tmp_path / "e", "--metrics", ""),
                   "--metrics: choose at least one")


def test_decoding_settings_are_checked_by_name_and_type():
    from piilab.eval.config import EvalConfig

    for decoding, message in (({"max_new_tok": 3}, "decoding: unknown key.*max_new_tok"),
                              ({"max_new_tokens": 2.5}, "max_new_tokens must be int, got 2.5"),
                              ("greedy", "decoding: must be a mapping")):
        with pytest.raises(PiilabError, match=message):
            EvalConfig(models=[{"spec": "m"}], data="d", out="o", decoding=decoding)


@pytest.mark.parametrize(("odd", "message"), [
    ({"meta": "x"}, "line 2: field 'meta' must be object or null"),
    ({"spans": [{"start": 0}]}, "line 2: field 'spans': spans[0] has no 'label'"),
    ({"spans": ["NAME"]}, "line 2: field 'spans': spans[0] must be an object"),
    ({"spans": [{"label": "NAME", "start": "0"}]}, "line 2: field 'spans': spans[0].start must be int"),
])
def test_odd_optional_fields_are_named_before_decoding(tiny_llama_dir, tmp_path, capsys, monkeypatch,
                                                       odd, message):
    from piilab.layers import decode as engine

    monkeypatch.setattr(engine, "generate", lambda *a, **k: pytest.fail("decoded"))
    data = write_records(tmp_path / "test.jsonl", RECORD, {**RECORD, "id": "r1", **odd})
    one_line_error(capsys, eval_argv(tiny_llama_dir, data, tmp_path / "e"), f"test.jsonl: {message}")


def test_records_with_an_empty_prompt_or_completion_are_skipped_and_counted(
        tiny_llama_dir, tmp_path, caplog, capsys):
    """As training does; the other records are scored exactly as without them."""
    import logging

    plain = write_records(tmp_path / "plain.jsonl", RECORD)
    odd = write_records(tmp_path / "odd.jsonl", {**RECORD, "id": "e1", "completion": ""}, RECORD,
                        {**RECORD, "id": "e2", "prompt": ""})
    argv = [a for a in FAST if a not in ("--limit", "1")]
    runs = {}
    for name, data in (("plain", plain), ("odd", odd)):
        with caplog.at_level(logging.WARNING):
            assert main(["eval", "--model", str(tiny_llama_dir), "--layers", "2", "--data", str(data),
                         "--out", str(tmp_path / name), "--max-new-tokens", "3", *argv]) == 0
        runs[name] = json.loads((tmp_path / name / "results.json").read_text())
    assert "skipped 2 of 3 records with an empty prompt or completion" in caplog.text
    assert runs["odd"]["dataset"]["n"] == 1 and runs["odd"]["dataset"]["skipped_empty"] == 2
    assert "skipped_empty" not in runs["plain"]["dataset"]
    assert runs["odd"]["runs"][0]["scores"] == runs["plain"]["runs"][0]["scores"]
    empty = write_records(tmp_path / "empty.jsonl", {**RECORD, "completion": ""})
    capsys.readouterr()
    one_line_error(capsys, ["eval", "--model", str(tiny_llama_dir), "--data", str(empty), "--out",
                            str(tmp_path / "x"), *argv], "no record to score")
