"""piilab eval on a tiny model: schema, scores, resume, argument checks, bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from piilab.cli import main
from piilab.eval import metrics
from piilab.eval import run as ev

RECORDS = [
    {"id": f"r{i}", "source": "synthetic", "prompt": f"Find PII: Jane Doe {i} wrote.",
     "completion": f"Jane Doe {i} (NAME)", "text": f"Jane Doe {i} wrote.", "spans": None}
    for i in range(5)
]
FAST = ["--metrics", "bleu,rouge,pii", "--max-new-tokens", "6", "--batch-size", "2",
        "--device", "cpu"]


@pytest.fixture
def data_dir(tmp_path) -> Path:
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in RECORDS))
    return folder


def eval_args(model_dir, data_dir, out, *extra):
    return ["eval", "--model", str(model_dir), "--layers", "2,4", "--data", str(data_dir),
            "--out", str(out), *FAST, *extra]


def strip_volatile(results: dict) -> dict:
    """results.json without what legitimately differs between runs (timing)."""
    results = json.loads(json.dumps(results))
    for run in results["runs"]:
        run.pop("timing")
        run.pop("outputs_sha256")
    return results


def test_eval_writes_results_and_outputs_as_designed(tiny_llama_dir, data_dir, tmp_path):
    out = tmp_path / "eval"
    assert main(eval_args(tiny_llama_dir, data_dir, out)) == 0
    results = json.loads((out / "results.json").read_text())
    assert {"schema_version", "piilab_version", "created", "dataset", "metrics", "runs"} <= set(results)
    assert results["dataset"]["n"] == 5 and len(results["dataset"]["sha256"]) == 64
    assert [run["layer"] for run in results["runs"]] == [2, 4]
    for run in results["runs"]:
        assert {"model", "adapter", "layer", "lens", "decoding", "scores", "per_label", "timing",
                "outputs"} <= set(run)
        rows = [json.loads(line) for line in (out / run["outputs"]).read_text().splitlines()]
        assert [row["id"] for row in rows] == [r["id"] for r in RECORDS]
        assert [row["reference"] for row in rows] == [r["completion"] for r in RECORDS]
        # the scores are exactly the metrics of these outputs
        direct = metrics.score([row["output"] for row in rows], [r["completion"] for r in RECORDS],
                               metrics=("bleu", "rouge", "pii"))
        assert run["scores"] == pytest.approx(direct.scores)
        assert run["timing"]["decode_s"] > 0
    assert json.loads((out / ev.CONFIG_FILE).read_text())["layers"] == [2, 4]


def test_answers_max_new_tokens_cut_are_counted_per_layer(tiny_llama_dir, data_dir, tmp_path, caplog):
    caplog.set_level("INFO", "piilab.eval.run")
    assert main(eval_args(tiny_llama_dir, data_dir, tmp_path / "cut")) == 0  # a random model babbles
    assert "answers cut at max_new_tokens 6, scored as written: layer 2 5 of 5, layer 4 5 of 5" in caplog.text
    caplog.clear()
    assert main(eval_args(tiny_llama_dir, data_dir, tmp_path / "ended", "--eos-weight", "1e9")) == 0
    assert "answers cut" not in caplog.text  # every answer ended with EOS at once


def test_killed_run_resumes_without_redoing_or_losing_anything(tiny_llama_dir, data_dir, tmp_path,
                                                               monkeypatch):
    reference_out = tmp_path / "uninterrupted"
    assert main(eval_args(tiny_llama_dir, data_dir, reference_out)) == 0

    out = tmp_path / "killed"
    real_append, written = ev.append_jsonl, []

    def append_then_die(path, row):
        if len(written) == 3:
            raise KeyboardInterrupt
        real_append(path, row)
        written.append(row["id"])

    monkeypatch.setattr(ev, "append_jsonl", append_then_die)
    assert main(eval_args(tiny_llama_dir, data_dir, out)) == 130
    assert not (out / "results.json").exists()

    monkeypatch.setattr(ev, "append_jsonl", real_append)
    from piilab.layers import decode as engine

    real_generate, decoded = engine.generate, []

    def spy(model, tokenizer, prompts, **kwargs):
        decoded.append((len(prompts), tuple(kwargs["layers"])))
        return real_generate(model, tokenizer, prompts, **kwargs)

    monkeypatch.setattr(engine, "generate", spy)
    assert main(eval_args(tiny_llama_dir, data_dir, out)) == 0
    # 3 rows were written (r0 and r1 at layer 2, r0 at layer 4): only r1 at layer 4 and the
    # three untouched samples are decoded again
    assert decoded == [(1, (4,)), (2, (2, 4)), (1, (2, 4))]
    for run in json.loads((out / "results.json").read_text())["runs"]:
        ids = [json.loads(line)["id"] for line in (out / run["outputs"]).read_text().splitlines()]
        assert ids == [r["id"] for r in RECORDS]  # nothing lost, nothing repeated
    resumed = strip_volatile(json.loads((out / "results.json").read_text()))
    uninterrupted = strip_volatile(json.loads((reference_out / "results.json").read_text()))
    for results in (resumed, uninterrupted):
        results.pop("created")
        results["config"].pop("out", None)
    assert resumed == uninterrupted

    # a finished run started again decodes and scores nothing
    decoded.clear()
    monkeypatch.setattr(ev.metrics, "score", lambda *a, **k: pytest.fail("rescored"))
    assert main(eval_args(tiny_llama_dir, data_dir, out)) == 0
    assert decoded == []


def test_changed_arguments_need_overwrite(tiny_llama_dir, data_dir, tmp_path, capsys):
    out = tmp_path / "eval"
    assert main(eval_args(tiny_llama_dir, data_dir, out, "--limit", "2")) == 0
    capsys.readouterr()
    assert main(eval_args(tiny_llama_dir, data_dir, out, "--limit", "3")) == 2
    assert "limit" in capsys.readouterr().err
    assert main(eval_args(tiny_llama_dir, data_dir, out, "--limit", "3", "--overwrite")) == 0
    assert json.loads((out / "results.json").read_text())["dataset"]["n"] == 3


def test_sampled_outputs_do_not_depend_on_the_batch_size(tiny_llama_dir, data_dir, tmp_path):
    sampling = ["--sample", "--temperature", "1.5", "--seed", "5", "--layers", "4", "--limit", "4"]
    outputs = []
    for batch in ("1", "4"):
        out = tmp_path / f"b{batch}"
        args = ["eval", "--model", str(tiny_llama_dir), "--data", str(data_dir), "--out", str(out),
                "--metrics", "bleu", "--max-new-tokens", "6", "--device", "cpu", "--batch-size", batch,
                "--free-decoding", *sampling]
        assert main(args) == 0
        outputs.append([row["output"] for path in sorted((out / "outputs").glob("*.jsonl"))
                        for row in map(json.loads, path.read_text().splitlines())])
    assert outputs[0] == outputs[1] and len(set(outputs[0])) > 1


@pytest.mark.parametrize(
    "setup, message",
    [
        (lambda d: (d / "test.jsonl").unlink(), "not found"),
        (lambda d: (d / "test.jsonl").write_text(""), "no records"),
        (lambda d: (d / "test.jsonl").write_text('{"id": "x", "prompt": "p"}\n'), "completion"),
    ],
)
def test_bad_test_files_are_one_line_errors(tiny_llama_dir, data_dir, tmp_path, capsys, setup,
                                            message):
    setup(data_dir)
    out = tmp_path / "eval"
    assert main(eval_args(tiny_llama_dir, data_dir, out)) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not out.exists()  # nothing half-written


def test_layers_the_model_lacks(tiny_llama_dir, data_dir, tmp_path, capsys):
    out = tmp_path / "eval"
    args = eval_args(tiny_llama_dir, data_dir, out)
    args[args.index("2,4")] = "2,9"
    assert main(args) == 2
    assert "layers 1..4" in capsys.readouterr().err
    assert not out.exists()


def test_out_path_that_is_a_file(tiny_llama_dir, data_dir, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(eval_args(tiny_llama_dir, data_dir, blocker / "eval")) == 2
    assert "cannot write" in capsys.readouterr().err


@pytest.mark.slow
def test_two_processes_give_the_results_of_one(tiny_llama_dir, data_dir, tmp_path):
    single = tmp_path / "single"
    assert main(eval_args(tiny_llama_dir, data_dir, single)) == 0
    double = tmp_path / "double"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                "--master_port", "29517", "-m", "piilab"]
    proc = subprocess.run(torchrun + eval_args(tiny_llama_dir, data_dir, double), env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert not list((double / "outputs").glob("*.rank*.jsonl"))  # parts merged
    a = strip_volatile(json.loads((single / "results.json").read_text()))
    b = strip_volatile(json.loads((double / "results.json").read_text()))
    for results in (a, b):
        results.pop("created")
        results["config"].pop("out", None)
    assert a == b
    for run in a["runs"]:
        assert [json.loads(l)["output"] for l in (single / run["outputs"]).read_text().splitlines()] \
            == [json.loads(l)["output"] for l in (double / run["outputs"]).read_text().splitlines()]


def test_held_out_templates_are_scored_apart(tiny_llama_dir, tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    rows = [{**r, "meta": {"heldout_template": i % 2 == 0}} for i, r in enumerate(RECORDS)]
    (folder / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "eval"
    assert main(eval_args(tiny_llama_dir, folder, out)) == 0
    run = json.loads((out / "results.json").read_text())["runs"][0]
    assert run["subsets"]["heldout_templates"]["n"] == 3
    assert run["subsets"]["seen_templates"]["n"] == 2
    outputs = [json.loads(line)["output"] for line in (out / run["outputs"]).read_text().splitlines()]
    heldout = metrics.score(outputs[::2], [r["completion"] for r in RECORDS[::2]], metrics=("pii",))
    assert run["subsets"]["heldout_templates"]["PII-F1"] == heldout.scores["PII-F1"]


def test_one_model_through_two_lenses_in_one_run(tiny_llama_dir, data_dir, tmp_path, capsys):
    """--model-lens gives one listed model its own lens; the others keep --lens."""
    both = tmp_path / "both"
    argv = eval_args(tiny_llama_dir, data_dir, both, "--model", str(tiny_llama_dir), "--model-lens", "raw")
    assert main(argv) == 0
    runs = json.loads((both / "results.json").read_text())["runs"]
    assert [(run["lens"], run["layer"]) for run in runs] == [("norm", 2), ("norm", 4), ("raw", 2), ("raw", 4)]
    assert len({run["id"] for run in runs}) == 4
    # each lens's outputs are those of an eval with that lens for every model
    for lens in ("norm", "raw"):
        alone = tmp_path / lens
        assert main(eval_args(tiny_llama_dir, data_dir, alone, "--lens", lens)) == 0
        for run in json.loads((alone / "results.json").read_text())["runs"]:
            twin = next(r for r in runs if (r["lens"], r["layer"]) == (lens, run["layer"]))
            outputs = [[(row["id"], row["output"]) for row in map(json.loads, (folder / r["outputs"]).open())]
                       for folder, r in ((alone, run), (both, twin))]
            assert outputs[0] == outputs[1]
    with pytest.raises(SystemExit) as exit_info:
        main(["eval", "--model-lens", "raw", "--model", str(tiny_llama_dir), "--data", str(data_dir),
              "--out", str(tmp_path / "x")])
    assert exit_info.value.code == 2 and "must follow its own --model" in capsys.readouterr().err


def test_models_of_different_depths_each_at_their_own_layers(tiny_llama_dir, tokenizer, data_dir,
                                                             tmp_path, capsys):
    """--model-layers gives one listed model its own exit layers; the others keep --layers."""
    from tests.tiny import save_model_dir, tiny_llama

    shallow = save_model_dir(tiny_llama(tokenizer, num_hidden_layers=2), tokenizer, tmp_path / "two")
    out = tmp_path / "both"
    argv = eval_args(tiny_llama_dir, data_dir, out, "--model", str(shallow), "--model-layers", "1,2")
    assert main(argv) == 0
    runs = json.loads((out / "results.json").read_text())["runs"]
    assert [(Path(run["model"]).name, run["layer"]) for run in runs] == [
        (tiny_llama_dir.name, 2), (tiny_llama_dir.name, 4), ("two", 1), ("two", 2)]
    assert [run["depth"] for run in runs] == [4, 4, 2, 2]  # so charts can compare the depths
    from piilab.eval.report import by_model, layer_axis

    assert layer_axis(by_model(runs)) == ({str(tiny_llama_dir): [0.5, 1.0], str(shallow): [0.5, 1.0]},
                                          "exit layer / the model's layers")
    # without its own layers the shallow model is refused at the deep one's layer 4
    assert main(eval_args(tiny_llama_dir, data_dir, tmp_path / "x", "--model", str(shallow))) != 0
    assert "has layers 1..2, so exit layer(s) 4 do not exist" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(eval_args(tiny_llama_dir, data_dir, tmp_path / "y", "--model-layers", "1",
                       "--model-layers", "2"))
    assert exit_info.value.code == 2 and "must follow its own --model" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(eval_args(tiny_llama_dir, data_dir, tmp_path / "z", "--model-layers", "one"))
    # a folder written before models had layers of their own resumes
    saved = json.loads((out / "eval_config.json").read_text())
    assert [m.get("layers") for m in saved["models"]] == [None, [1, 2]]
    saved["models"][0].pop("layers", None)
    (out / "eval_config.json").write_text(json.dumps(saved))
    assert main(argv) == 0
    # an experiment file's entry; one model listed twice names the same runs, whatever its layers
    config = ev.EvalConfig(models=[{"spec": "m", "layers": [5, 9]}], data="d", out="o")
    assert config.models[0].layers == (5, 9) and hash(config.models[0])
    with pytest.raises(Exception, match="given twice"):
        ev.EvalConfig(models=[{"spec": "m", "layers": [5]}, {"spec": "m", "layers": [9]}], data="d", out="o")


def test_pii_records_decode_copy_constrained_unless_free_decoding_is_asked(
        tiny_llama_dir, tmp_path, monkeypatch):
    from piilab.layers import decode as engine

    folder = tmp_path / "data"
    folder.mkdir()
    rows = [{**RECORDS[0], "spans": [{"start": 0, "end": 10, "label": "NAME", "value": "Jane Doe 0"}]},
            {**RECORDS[1], "completion": "Jane Doe 0 (NAME)"}]  # and an instruction row
    (folder / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "card.json").write_text(json.dumps({"labels": {"NAME": "a name", "EMAIL": "an email"}}))
    seen = []

    def answer_with_a_foreign_label(model, tokenizer, prompts, **kwargs):
        seen.append(kwargs["answers"])
        texts = ["Jane Doe 0 (NAME)\nJane Doe 0 (SSN)"] * len(prompts)
        return engine.Generation(kwargs["layers"], {L: texts for L in kwargs["layers"]},
                                 {L: [[0]] * len(prompts) for L in kwargs["layers"]},
                                 dict.fromkeys(kwargs["layers"], 0.1), 0.1, len(prompts))

    monkeypatch.setattr(engine, "generate", answer_with_a_foreign_label)
    for extra, expected in (((), [("Jane Doe 0 wrote.", ("NAME", "EMAIL")), None]),
                            (("--free-decoding",), None)):
        out = tmp_path / f"eval{len(extra)}"
        seen.clear()
        assert main(["eval", "--model", str(tiny_llama_dir), "--data", str(folder),
                     "--out", str(out), "--metrics", "pii", "--device", "cpu", *extra]) == 0
        assert seen == [expected]
        run = json.loads((out / "results.json").read_text())["runs"][0]
        assert run["constrained"] is not bool(extra)
        # the SSN line is outside the card's label set: malformed, never a false positive
        assert run["counts"]["malformed_lines"] == 2 and run["counts"]["fp"] == 0
        assert run["counts"]["tp"] == 2
