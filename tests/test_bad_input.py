"""Bad input across every verb: exit code 2, one `piilab: error:` line naming the file, line or
flag, no traceback, and every file the user had left exactly as it was (issue 18)."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

import pytest
from helpers import one_line_error, read_jsonl

import piilab.models.loading
import piilab.train.run
from piilab.cli import main
from piilab.io import done_ids

pytestmark = pytest.mark.usefixtures("one_thread")

SPANS = [
    {"id": "r1", "text": "Call John Smith today.", "spans": [{"start": 5, "end": 15, "label": "FOOBAR_LABEL"}]},
    {"id": "r2", "text": "Mail jane@example.org now.", "spans": [{"start": 5, "end": 21, "label": "EMAIL"}]},
    {"id": "r3", "text": "Ring Omar Haddad on Monday.", "spans": [{"start": 5, "end": 16, "label": "NAME"}]},
]


def snapshot(root: Path) -> dict[str, str]:
    """sha256 of every file under `root` (the user's files, hashed before and after)."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def user(tmp_path, monkeypatch):
    """A working folder holding a user's files; the test fails if any of them changes."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "spans.jsonl").write_text("".join(json.dumps(r) + "\n" for r in SPANS))
    (tmp_path / "afile").write_text("keep me\n")
    (tmp_path / "binary.jsonl").write_bytes(bytes(range(255, -1, -1)) * 4)
    (tmp_path / "binary.txt").write_bytes(b"\xff\xfe\x00\x81" * 64)
    (tmp_path / "empty.jsonl").write_text("")
    (tmp_path / "prompts.jsonl").write_text('\n{"text": "no prompt"}\n')
    (tmp_path / "existing").mkdir()
    (tmp_path / "existing" / "mine.txt").write_text("precious\n")
    before = snapshot(tmp_path)
    yield tmp_path
    after = snapshot(tmp_path)
    assert {k: v for k, v in after.items() if k in before} == before, "a user's file changed"


def results_dir(root: Path, body) -> Path:
    folder = root / "ev"
    folder.mkdir()
    (folder / "results.json").write_text(json.dumps(body))
    return folder


def refuse_loading(monkeypatch):
    """Loading a model fails the test: the error must come before it."""
    def boom(*args, **kwargs):
        raise AssertionError("the model was loaded before the input was checked")
    monkeypatch.setattr(piilab.models.loading, "load_model", boom)
    monkeypatch.setattr(piilab.models, "load_model", boom)
    monkeypatch.setattr(piilab.train.run, "build_trainer", boom)


# ------------------------------------------------------------------ the cases


def test_unknown_label_under_strict_names_file_record_and_label(user, capsys):
    one_line_error(capsys, ["data", "build", "--source", "spans:spans.jsonl", "--strict", "--out", "d"],
                   "spans.jsonl: record r1: label FOOBAR_LABEL is not in the crosswalk")
    assert not (user / "d" / "train.jsonl").exists()


def test_unknown_label_skips_the_record_and_counts_it(user, caplog):
    with caplog.at_level(logging.INFO):
        assert main(["data", "build", "--source", "spans:spans.jsonl", "--test-size", "0", "--out", "d"]) == 0
    rows = read_jsonl(user / "d" / "train.jsonl")
    assert "r1" not in {r["id"] for r in rows} and len(rows) == 2
    assert all("John Smith" not in r["text"] for r in rows)  # never a negative example
    source = json.loads((user / "d" / "card.json").read_text())["sources"]["spans"]
    assert source["skip_reasons"] == {"label FOOBAR_LABEL not in the crosswalk": 1}
    assert source["examples"]["label FOOBAR_LABEL not in the crosswalk"] == ["spans.jsonl: record r1"]
    assert "1 skipped (1 label FOOBAR_LABEL not in the crosswalk)" in caplog.text  # the summary


def test_data_build_out_naming_a_file(user, capsys):
    one_line_error(capsys, ["data", "build", "--synthetic", "5", "--out", "afile"], "afile: --out names a file")


def test_data_build_out_that_cannot_be_created(user, capsys):
    one_line_error(capsys, ["data", "build", "--synthetic", "5", "--out", "afile/d"],
                   "afile/d: --out: afile is a file, so this folder cannot be created")


def test_a_failed_data_build_leaves_no_folder_it_made(user, capsys):
    (user / "empty.jsonl").write_text("")
    one_line_error(capsys, ["data", "build", "--source", "spans:empty.jsonl", "--out", "new/d"], "empty.jsonl")
    assert not (user / "new").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_data_build_read_only_out(user, capsys):
    (user / "ro").mkdir(mode=0o555)
    one_line_error(capsys, ["data", "build", "--synthetic", "5", "--out", "ro"], "ro: --out: cannot write")


def test_train_out_under_a_file_fails_before_the_model_loads(user, capsys, monkeypatch):
    assert main(["data", "build", "--synthetic", "6", "--out", "d"]) == 0
    refuse_loading(monkeypatch)
    one_line_error(capsys, ["train", "--data", "d", "--out", "afile/run", "--max-steps", "1"],
                   "afile/run: --out: afile is a file")


UNWRITABLE = "/proc/piilab-test-out"  # refuses even root, which os.access lets through


@pytest.mark.parametrize("argv, message", [
    (["train", "--data", "d", "--out", UNWRITABLE, "--max-steps", "1"], f"{UNWRITABLE}: --out: cannot write here"),
    (["lens", "train", "--data", "d", "--out", UNWRITABLE], f"{UNWRITABLE}: --out: cannot write here"),
    (["lens", "train", "--data", "d", "--out", "afile/lens"], "afile/lens: --out: afile is a file"),
    (["lens", "train", "--data", "d", "--out", "afile"], "afile: --out names a file"),
    (["merge", "adapter", "--out", "afile"], "afile: --out names a file"),
    (["merge", "adapter", "--out", "afile/merged"], "afile/merged: --out: afile is a file"),
    (["merge", "adapter", "--out", UNWRITABLE], f"{UNWRITABLE}: --out: cannot write here"),
    (["merge", "adapter", "--out", "existing"], "existing: --out already holds files"),
])
@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc")
def test_an_unwritable_out_fails_before_the_model_loads(user, capsys, monkeypatch, argv, message):
    assert main(["data", "build", "--synthetic", "6", "--out", "d"]) == 0
    (user / "adapter").mkdir()
    (user / "adapter" / "adapter_config.json").write_text('{"base_model_name_or_path": "m"}')
    refuse_loading(monkeypatch)
    one_line_error(capsys, argv, message)


@pytest.mark.parametrize("argv", [
    ["train", "--data", "d", "--out", "new/run", "--max-steps", "1"],
    ["lens", "train", "--data", "d", "--out", "new/run"],
    ["merge", "adapter", "--out", "new/run"],
])
def test_a_failed_command_leaves_no_empty_out_folder_it_made(user, capsys, monkeypatch, argv):
    assert main(["data", "build", "--synthetic", "6", "--out", "d"]) == 0
    (user / "adapter").mkdir()
    (user / "adapter" / "adapter_config.json").write_text('{"base_model_name_or_path": "m"}')
    refuse_loading(monkeypatch)  # the work fails after --out was tried (and made)
    with pytest.raises(AssertionError, match="loaded before"):
        main(argv)
    assert not (user / "new").exists()  # neither the folder nor the parent the check made
    (user / "new" / "run").mkdir(parents=True)  # a folder that was there before stays
    with pytest.raises(AssertionError, match="loaded before"):
        main(argv)
    assert (user / "new" / "run").is_dir()


@pytest.mark.parametrize("verb,message", [
    ("generate", "binary.jsonl: no row with a string field 'prompt' (the first bad row: line 1: not UTF-8"),
    ("extract", "binary.jsonl: no row with a string field 'text' (the first bad row: line 1: not UTF-8"),
])
def test_binary_input_file(user, capsys, monkeypatch, verb, message, tiny_llama_dir):
    refuse_loading(monkeypatch)
    one_line_error(capsys, [verb, "--model", str(tiny_llama_dir), "--input", "binary.jsonl"], message)


def test_extract_binary_text_file(user, capsys, monkeypatch, tiny_llama_dir):
    refuse_loading(monkeypatch)
    one_line_error(capsys, ["extract", "--model", str(tiny_llama_dir), "--input", "binary.txt"],
                   "binary.txt: not UTF-8 text")


@pytest.mark.parametrize("verb, source", [("extract", ["--input", "texts.jsonl"]),
                                           ("generate", ["--prompt", "Hi"])])
def test_an_output_another_piilab_is_writing_is_refused(user, capsys, monkeypatch, tiny_llama_dir,
                                                        verb, source):
    from piilab.io import written_alone

    Path("texts.jsonl").write_text('{"text": "Omar"}\n')
    refuse_loading(monkeypatch)
    with written_alone("found.jsonl", "--output"):  # as another process running now holds it
        one_line_error(capsys, [verb, "--model", str(tiny_llama_dir), *source, "-o", "found.jsonl"],
                       "found.jsonl: another piilab is writing this --output now")
    assert not Path("found.jsonl").exists()


def test_an_eval_folder_another_eval_is_writing_is_refused(user, capsys, monkeypatch, tiny_llama_dir):
    from piilab.io import written_alone

    refuse_loading(monkeypatch)
    with written_alone("results", "--out"):
        one_line_error(capsys, ["eval", "--model", str(tiny_llama_dir), "--data", "d", "--out", "results"],
                       "results: another piilab is writing this --out now")


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc")
def test_an_output_file_where_even_root_cannot_write_is_refused_first(user, capsys):
    one_line_error(capsys, ["data", "synth", "-n", "3", "--out", "/proc/piilab-x.jsonl"],
                   "/proc/piilab-x.jsonl: --out: cannot write here")


def test_generate_output_naming_a_folder_fails_before_decoding(user, capsys, monkeypatch, tiny_llama_dir):
    refuse_loading(monkeypatch)
    one_line_error(capsys, ["generate", "--model", str(tiny_llama_dir), "--prompt", "Hi", "-o", "existing"],
                   "existing: --output names a folder")


def test_report_on_a_results_list(user, capsys):
    results_dir(user, [1, 2])
    one_line_error(capsys, ["report", "ev"], "ev/results.json: expected a JSON object with 'runs'")


def test_report_out_naming_a_file(user, capsys):
    run = {"model": "m", "layer": 1, "scores": {"BLEU": 0.5}, "timing": {"per_sample_s": 0.1},
           "outputs": "outputs/x.jsonl"}
    results_dir(user, {"runs": [run]})
    one_line_error(capsys, ["report", "ev", "--out", "afile"], "afile: cannot write the report here (--out")


@pytest.mark.parametrize("body, message", [
    ("out: x\ndata: {synthetic: many}\n", "section 'data': synthetic must be int, got 'many'"),
    ("out: x\ndata: 5\n", "section 'data' must be a mapping of settings, got 5"),
    ("out: x\ndata: {synthetic: 5}\nreport: {examples: 2}\n", "section 'report': unknown key(s) examples"),
    ("out: x\ndata: {synthetic: 5}\ntrain: {lr: fast}\n", "section 'train': lr must be float, got 'fast'"),
    ("out: [1]\ndata: {synthetic: 5}\n", "'out' must be a folder name"),
])
def test_run_with_a_bad_experiment_file(user, capsys, body, message):
    (user / "exp.yaml").write_text(body)
    one_line_error(capsys, ["run", "exp.yaml"], message)
    assert not (user / "x").exists()  # refused before any stage ran


def test_models_info_on_custom_code_names_the_flag(user, capsys):
    folder = user / "custom"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({
        "model_type": "piilab_custom", "auto_map": {"AutoConfig": "configuration_custom.CustomConfig"}}))
    (folder / "configuration_custom.py").write_text("raise SystemExit('must not run')\n")
    one_line_error(capsys, ["models", "info", str(folder)], "--trust-remote-code")


def test_pickle_only_folder_is_not_supported_and_refused(user, capsys, tiny_llama_dir, monkeypatch):
    folder = user / "pickled"
    folder.mkdir()
    for f in tiny_llama_dir.iterdir():
        if f.suffix != ".safetensors":
            (folder / f.name).write_bytes(f.read_bytes())
    (folder / "pytorch_model.bin").write_bytes(b"not really a pickle")
    assert main(["models", "info", str(folder), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["supported"] is False and info["weights"].startswith("pickle only")
    one_line_error(capsys, ["generate", "--model", str(folder), "--prompt", "Hi"],
                   "has only pickle weights (.bin/.pt), which piilab refuses to load")


def test_a_pickle_only_adapter_is_refused_before_peft_loads_it(user, capsys, tiny_llama_dir):
    adapter = user / "pickled-adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({
        "peft_type": "LORA", "base_model_name_or_path": str(tiny_llama_dir), "r": 2,
        "target_modules": ["q_proj"], "task_type": "CAUSAL_LM"}))
    (adapter / "adapter_model.bin").write_bytes(b"not really a pickle")
    one_line_error(capsys, ["generate", "--model", str(tiny_llama_dir), "--adapter", str(adapter),
                            "--prompt", "Hi", "--device", "cpu"],
                   "pickled-adapter: has only pickle weights (.bin/.pt), which piilab refuses to load")


def test_span_jsonl_with_a_first_line_over_64_kib_is_detected(user, capsys):
    long = {"id": "long", "text": "x " * 40000 + "Ann Lee", "spans": [{"start": 80000, "end": 80007, "label": "NAME"}]}
    (user / "long.jsonl").write_text(json.dumps(long) + "\n" + json.dumps(SPANS[1]) + "\n")
    assert main(["data", "build", "--source", "long.jsonl", "--max-chars", "200000", "--test-size", "0",
                 "--out", "d"]) == 0
    card = json.loads((user / "d" / "card.json").read_text())
    assert card["sources"]["spans"]["written"] == 2


def test_stale_spool_of_a_killed_build_is_removed_and_reported(user, caplog):
    stale = user / "d" / ".piilab-build-killed"
    stale.mkdir(parents=True)
    (stale / "records.spool").write_bytes(b"x" * 2_000_000)
    (stale / "pid").write_text("999999999")  # no such process
    with caplog.at_level(logging.WARNING):
        assert main(["data", "build", "--synthetic", "5", "--out", "d"]) == 0
    assert not stale.exists()
    assert any("removed 2.0 MB of scratch files" in r.getMessage() and "d/.piilab-build-killed" in r.getMessage()
               for r in caplog.records)
    assert not list((user / "d").glob(".piilab-build-*"))  # this build's own spool is gone too


def test_a_spool_marked_by_a_pid_now_anothers_is_stale_and_a_live_builds_is_not(user, capsys):
    import subprocess
    import sys

    stale = user / "d" / ".piilab-build-rebooted"
    stale.mkdir(parents=True)
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:  # the killed build's pid, reused after a reboot by a process that is no build
        (stale / "pid").write_text(str(stranger.pid))
        assert main(["data", "build", "--synthetic", "5", "--out", "d"]) == 0
        assert not stale.exists()
    finally:
        stranger.kill()
        stranger.wait()
    from piilab.io import scratch_dir

    with scratch_dir(user / "e", ".piilab-build-") as live:  # a build writing there now
        one_line_error(capsys, ["data", "build", "--synthetic", "5", "--out", "e"],
                       f"e: another run (pid {os.getpid()}) is writing here")
        assert Path(live).is_dir()


@pytest.mark.parametrize("argv, message", [
    (["data", "build", "--source", "spans:spans.jsonl", "--synthetic", "-3", "--out", "d"], "--synthetic must be >= 0, got -3"),
    (["eval", "--model", "m", "--data", "spans.jsonl", "--out", "e", "--bootstrap", "-1"], "--bootstrap must be >= 0"),
    (["report", "ev", "--good-fraction", "5"], "--good-fraction must be in (0, 1], got 5.0"),
    (["report", "ev", "--examples", "-1"], "--examples must be >= 0, got -1"),
    (["data", "build", "--source", "foo:spans.jsonl", "--out", "d"],
     "foo:spans.jsonl: unknown format 'foo'; known formats: auto, kaggle, ai4privacy, presidio, conll, spans, alpaca"),
    (["data", "build", "--source", "spans:empty.jsonl", "--out", "d"], "empty.jsonl: no records in it"),
    (["data", "build", "--source", "empty.jsonl", "--out", "d"], "empty.jsonl: the file is empty"),
])
def test_out_of_range_flags_and_named_inputs(user, capsys, argv, message):
    results_dir(user, {"runs": [{"model": "m", "layer": 1, "scores": {}, "timing": {}, "outputs": "o.jsonl"}]})
    one_line_error(capsys, argv, message)
    assert not (user / "d").exists() or not (user / "d" / "card.json").exists()


def test_garbage_lines_in_an_outputs_file_are_logged_when_redone(tmp_path, caplog):
    path = tmp_path / "run.jsonl"
    path.write_text('{"id": "a", "output": "x"}\nnot json at all\n{"id": "b", "output": "y"}\n')
    with caplog.at_level(logging.WARNING):
        assert done_ids(path) == {"a"}
    assert path.read_text() == '{"id": "a", "output": "x"}\n'
    assert any(f"{path}: line 2 is not a complete output row" in r.getMessage() for r in caplog.records)


def test_the_same_model_twice_is_refused(user, capsys, tiny_llama_dir, monkeypatch):
    refuse_loading(monkeypatch)
    m = str(tiny_llama_dir)
    one_line_error(capsys, ["eval", "--model", m, "--model", m, "--data", "spans.jsonl", "--out", "e"],
                   f"--model {m} is given twice")
    assert not (user / "e").exists()


# ------------------------------------------------------------------ more of the same, every verb


@pytest.mark.parametrize("argv, message", [
    (["data", "build", "--source", "spans:spans.jsonl", "--test-size", "1.5", "--out", "d"], "--test-size must be in [0, 1)"),
    (["data", "build", "--synthetic", "5", "--mix", "alpaca.json", "--out", "d"], "--mix expects alpaca:PATH:FRACTION"),
    (["data", "build", "--synthetic", "5", "--crosswalk", "nope.csv", "--out", "d"], "nope.csv: crosswalk file not found"),
    (["data", "build", "--synthetic", "5", "--labels", "SHOE_SIZE", "--out", "d"], "unknown label(s) SHOE_SIZE"),
    (["data", "build", "--source", "spans:missing.jsonl", "--out", "d"], "missing.jsonl: no such file or directory"),
    (["data", "build", "--source", "kaggle:afile", "--out", "d"], "afile: line 1: malformed JSON"),
    (["data", "build", "--synthetic", "5", "--max-chars", "0", "--out", "d"], "--max-chars > 0"),
    (["data", "build", "--synthetic", "5", "--split-by", "colour", "--out", "d"], "unknown --split-by 'colour'"),
    (["data", "synth", "-n", "3", "--out", "existing"], "existing: --out names a folder"),
    (["data", "synth", "-n", "3", "--out", "afile/s.jsonl"], "afile/s.jsonl: --out: cannot write here"),
    (["data", "synth", "-n", "-2", "--out", "s.jsonl"], "synthetic document count must be >= 0, got -2"),
    (["data", "synth", "-n", "3", "--excerpts", "0.2", "--out", "s.jsonl"], "--excerpts needs --generator compose"),
    (["data", "synth", "-n", "3", "--generator", "compose", "--excerpts", "2", "--out", "s.jsonl"],
     "excerpt share must be within 0 and 1, got 2.0"),
    (["data", "build", "--synthetic", "5", "--excerpts", "0.2", "--out", "d"], "needs --generator compose"),
    (["data", "stats", "nowhere"], "nowhere"),
    (["data", "stats", "existing"], "existing"),
    (["train", "--data", "nowhere", "--out", "run"], "nowhere: --data: no such dataset folder or file"),
    (["train", "--data", "existing", "--out", "afile"], "afile: --out names a file"),
    (["report", "nowhere"], "nowhere/results.json: file not found"),
    (["run", "missing.yaml"], "missing.yaml: cannot read experiment file"),
    (["run", "afile"], "afile: an experiment file is a mapping"),
    (["models", "info", "afile"], "afile: a model spec must be a folder, not a file"),
    (["models", "info", "existing"], "existing: not a model folder"),
    (["merge", "existing", "--out", "m"], "existing"),
    (["lens", "train", "--model", "existing", "--data", "spans.jsonl", "--out", "lens"],
     "spans.jsonl: line 1: record has no 'prompt' field"),
    (["eval", "--model", "existing", "--data", "spans.jsonl", "--out", "e"], "spans.jsonl: line 1: record has no 'prompt' field"),
    (["eval", "--model", "existing", "--data", "nowhere", "--out", "e"], "nowhere"),
    (["eval", "--model", "m", "--data", "spans.jsonl", "--out", "e", "--limit", "0"], "--limit must be at least 1"),
    (["extract", "--model", "existing"], "give a TEXT or --input FILE"),
    (["extract", "--model", "existing", "--input", "missing.txt"], "missing.txt: cannot read"),
    (["extract", "--model", "existing", "caf\udce9 Jane"], "TEXT is not UTF-8 text"),
    (["extract", "--model", "existing", "--labels", " , ", "Jane"], "--labels ' , ': the label set is empty"),
    (["generate", "--model", "existing", "--prompt", "caf\udce9"], "--prompt is not UTF-8 text"),
])
def test_more_bad_input(user, capsys, monkeypatch, argv, message):
    refuse_loading(monkeypatch)
    one_line_error(capsys, argv, message)


@pytest.mark.parametrize("argv, message", [
    (["--layers", "99"], "exit layer"),
    (["--input", "prompts.jsonl"],
     "prompts.jsonl: no row with a string field 'prompt' (the first bad row: line 2: no string field"),
    (["--input", "empty.jsonl"], "empty.jsonl: no row with a string field 'prompt'"),
    (["--draft-tokens", "3"], "--draft-tokens needs --speculative E"),
    (["-o", "afile/out.jsonl"], "afile/out.jsonl: --output: cannot write here"),
])
def test_generate_bad_input(user, capsys, tiny_llama_dir, argv, message):
    args = ["generate", "--model", str(tiny_llama_dir), *(["--prompt", "Hi"] if "--input" not in argv else []), *argv]
    one_line_error(capsys, args, message)


def test_a_dataset_split_of_other_bytes_is_named_by_file_and_line(user, capsys):
    assert main(["data", "build", "--synthetic", "6", "--out", "d"]) == 0
    capsys.readouterr()
    with open("d/test.jsonl", "ab") as handle:
        handle.write(b"\xff\xfe\n")
    lines = len(Path("d/test.jsonl").read_bytes().splitlines())
    one_line_error(capsys, ["data", "stats", "d"], f"test.jsonl: line {lines}: not UTF-8 text")


def test_a_file_the_system_refuses_is_one_line_naming_it(user, capsys, monkeypatch):
    # root reads mode-000 files, so the refusal is the system's as a non-root user would get it
    assert main(["data", "build", "--synthetic", "6", "--out", "d"]) == 0
    capsys.readouterr()

    def refuse(path, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))
    monkeypatch.setattr(Path, "open", refuse)
    one_line_error(capsys, ["data", "stats", "d"], "d/card.json: Permission denied")
    monkeypatch.undo()  # before `user` hashes its files again


def test_an_extract_input_refused_leaves_no_lock_beside_its_output(user, capsys):
    (user / "empty.jsonl").write_text("")
    one_line_error(capsys, ["extract", "--input", "empty.jsonl", "--output", "found.jsonl"], "empty.jsonl")
    assert not list(user.glob(".found.jsonl*"))  # refused before anything was made for the output
