"""`piilab generate` end to end on tiny model folders, and its one-line errors (exit code 2)."""

import json

import pytest
from helpers import one_line_error, read_jsonl
from tiny import save_model_dir, tiny_gpt2, tiny_llama

from piilab.cli import main
from piilab.layers.decode import Decoding, generate
from piilab.models import load_model

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def prompts_file(tmp_path):
    path = tmp_path / "prompts.jsonl"
    rows = [{"id": "a", "prompt": "Jane Doe wrote to"}, {"prompt": "Call +1 555 010 2000 or"},
            {"id": 7, "prompt": "The student Ana Silva lives at"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_generate_writes_one_row_per_prompt_and_layer(tiny_llama_dir, prompts_file, tmp_path,
                                                      monkeypatch):
    from transformers import PreTrainedTokenizerBase

    out, tokenized = tmp_path / "out.jsonl", []
    real_call = PreTrainedTokenizerBase.__call__
    monkeypatch.setattr(PreTrainedTokenizerBase, "__call__",
                        lambda self, text, *a, **k: tokenized.append(text) or real_call(self, text, *a, **k))
    code = main(["generate", "--model", str(tiny_llama_dir), "--layers", "4,2", "--input",
                 str(prompts_file), "--max-new-tokens", "6", "--batch-size", "2", "--device", "cpu",
                 "--output", str(out)])
    assert code == 0
    assert sorted(tokenized) == sorted(json.loads(line)["prompt"]  # each once: checked, then decoded
                                       for line in prompts_file.read_text().splitlines())
    monkeypatch.undo()
    rows = read_jsonl(out)
    assert [(r["id"], r["layer"]) for r in rows] == [("a", 2), ("a", 4), (1, 2), (1, 4), (7, 2), (7, 4)]
    assert set(rows[0]) == {"id", "layer", "output", "input_digest"}
    # the same texts as the Python API on the same model
    model, tokenizer = load_model(str(tiny_llama_dir), device="cpu")
    prompts = [json.loads(line)["prompt"] for line in prompts_file.read_text().splitlines()]
    texts = generate(model, tokenizer, prompts, [2, 4], decoding=Decoding(max_new_tokens=6),
                     progress=False)
    assert [r["output"] for r in rows] == [texts[layer][i] for i in range(3) for layer in (2, 4)]
    assert not list(tmp_path.glob(".*.tmp"))  # written atomically: no temporary file left


def test_generate_output_resumes_with_only_the_rows_a_killed_run_did_not_write(
        tiny_llama_dir, prompts_file, tmp_path, capsys, monkeypatch):
    import piilab.cli.generate
    import piilab.layers.decode

    monkeypatch.setattr(piilab.cli.generate, "PROMPTS_AT_A_TIME", 1)
    out = tmp_path / "out.jsonl"
    argv = ["generate", "--model", str(tiny_llama_dir), "--layers", "4,2", "--input", str(prompts_file),
            "--max-new-tokens", "6", "--device", "cpu", "-o", str(out)]
    real, calls = piilab.layers.decode.generate, []

    def killed_in_round_2(model, tokenizer, prompts, layers, **kwargs):
        calls.append(list(prompts))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(model, tokenizer, prompts, layers, **kwargs)

    monkeypatch.setattr(piilab.layers.decode, "generate", killed_in_round_2)
    assert main(argv) == 130
    assert [(r["id"], r["layer"]) for r in read_jsonl(out)] == [("a", 2), ("a", 4)]
    with out.open("a") as handle:  # killed within a round's write: one row whole, one torn
        handle.write('{"id": 1, "layer": 2, "output": "kept"}\n{"id": 1, "layer": 4, "out')
    calls.clear()
    monkeypatch.setattr(piilab.layers.decode, "generate", lambda *a, **k: calls.append(a[2]) or real(*a, **k))
    assert main(argv) == 0
    assert [len(c) for c in calls] == [1, 1]  # prompts 1 and 7; "a" was whole
    rows = read_jsonl(out)
    assert [(r["id"], r["layer"]) for r in rows] == [("a", 2), ("a", 4), (1, 2), (1, 4), (7, 2), (7, 4)]
    assert rows[2]["output"] == "kept"
    model, tokenizer = load_model(str(tiny_llama_dir), device="cpu")
    texts = real(model, tokenizer, ["Call +1 555 010 2000 or", "The student Ana Silva lives at"], [4, 2],
                 decoding=Decoding(max_new_tokens=6), progress=False)
    assert [r["output"] for r in rows[3:]] == [texts[4][0], texts[2][1], texts[4][1]]
    capsys.readouterr()
    one_line_error(capsys, [*argv, "--lens", "raw"], "out.jsonl: written with other settings (lens differ)")
    # prompt 7 edited: only it is decoded again, its old rows taken out
    prompts_file.write_text(prompts_file.read_text().replace("Ana Silva", "Ana Sousa"))
    calls.clear()
    assert main(argv) == 0 and [tokenizer.decode(c[0], skip_special_tokens=True) for c in calls] == ["The student Ana Sousa lives at"]
    rows = read_jsonl(out)
    assert [(r["id"], r["layer"]) for r in rows] == [("a", 2), ("a", 4), (1, 2), (1, 4), (7, 2), (7, 4)]
    texts = real(model, tokenizer, ["The student Ana Sousa lives at"], [2, 4],
                 decoding=Decoding(max_new_tokens=6), progress=False)
    assert [r["output"] for r in rows[4:]] == [texts[2][0], texts[4][0]]


def test_sampled_rows_do_not_depend_on_rounds_or_a_resume(tiny_llama_dir, prompts_file, tmp_path,
                                                           monkeypatch):
    import piilab.cli.generate

    argv = ["generate", "--model", str(tiny_llama_dir), "--layers", "4", "--input", str(prompts_file),
            "--max-new-tokens", "8", "--sample", "--temperature", "1.5", "--seed", "3",
            "--device", "cpu", "-o"]
    whole, parts = tmp_path / "whole.jsonl", tmp_path / "parts.jsonl"
    assert main([*argv, str(whole)]) == 0
    monkeypatch.setattr(piilab.cli.generate, "PROMPTS_AT_A_TIME", 1)  # a round per prompt
    assert main([*argv, str(parts)]) == 0
    assert read_jsonl(parts) == read_jsonl(whole)
    parts.write_text(parts.read_text().splitlines(keepends=True)[0])  # as if killed after one row
    assert main([*argv, str(parts)]) == 0
    assert read_jsonl(parts) == read_jsonl(whole)


def test_generate_one_prompt_with_sampling_to_stdout(tiny_gpt2_dir, capsys):
    args = ["generate", "--model", str(tiny_gpt2_dir), "--layers", "1,3", "--prompt", "Jane Doe",
            "--max-new-tokens", "5", "--top-k", "5", "--temperature", "0.1", "--eos-weight", "2",
            "--seed", "4", "--lens", "raw", "--device", "cpu"]
    assert main(args) == 0
    first = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["id"], r["layer"]) for r in first] == [(0, 1), (0, 3)]
    assert main(args) == 0
    assert [json.loads(line) for line in capsys.readouterr().out.splitlines()] == first


@pytest.mark.parametrize("layers", ["0", "5", "2,9"])
def test_layer_out_of_range_is_a_one_line_error(tiny_llama_dir, capsys, layers):
    one_line_error(capsys, ["generate", "--model", str(tiny_llama_dir), "--layers", layers,
                            "--prompt", "Jane", "--device", "cpu"], "layers 1..4")


def test_empty_prompt_is_a_one_line_error(tiny_llama_dir, capsys):
    one_line_error(capsys, ["generate", "--model", str(tiny_llama_dir), "--prompt", "",
                            "--device", "cpu"], "--prompt is empty")


def test_bad_input_rows_are_skipped_counted_and_named_by_line(tiny_llama_dir, tmp_path, caplog, capsys):
    import logging

    path, out = tmp_path / "p.jsonl", tmp_path / "out.jsonl"
    rows = [{"prompt": "fine"}, {"prompt": "  "}, {"text": "Jane Doe, no prompt"}, "Jane Doe",
            {"id": "long", "prompt": "The" * 300}, {"id": "last", "prompt": "also fine"}]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows[:3]) + "{Jane Doe\n" +
                    "".join(json.dumps(row) + "\n" for row in rows[4:]))
    with caplog.at_level(logging.INFO):
        assert main(["generate", "--model", str(tiny_llama_dir), "--input", str(path), "--device", "cpu",
                     "--max-new-tokens", "8", "-o", str(out)]) == 0
    # ids are the rows' numbers among the file's rows (bad ones counted), as without bad rows
    assert [row["id"] for row in read_jsonl(out)] == [0, "last"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings[:2] == [f"{path}: line 3: no string field 'prompt'; row skipped",
                            f"{path}: line 4: malformed JSON (Expecting property name enclosed in "
                            "double quotes); row skipped"]
    assert warnings[2] == f"{path}: line 2: the prompt is empty; row skipped"  # once the model is in
    assert warnings[3].startswith(f"{path}: line 5: the prompt is longer than the context window")
    assert warnings[4:] == [f"{path}: 4 row(s) skipped, 2 to decode"]
    assert not any("Jane" in r.getMessage() for r in caplog.records)  # never a row's content
    assert "4 input row(s) skipped" in caplog.records[-1].getMessage()
    path.write_text(json.dumps({"prompt": ""}) + "\n")
    one_line_error(capsys, ["generate", "--model", str(tiny_llama_dir), "--input", str(path),
                            "--device", "cpu"], "p.jsonl: no row with a prompt that can be decoded")


def test_prompt_longer_than_the_context_window_is_a_one_line_error(tiny_llama_dir, capsys):
    one_line_error(capsys, ["generate", "--model", str(tiny_llama_dir), "--prompt", "The" * 300,
                            "--device", "cpu"], "longer than the context window (300 tokens > 256)")


def test_bad_decoding_settings_are_one_line_errors(tiny_llama_dir, capsys):
    one_line_error(capsys, ["generate", "--model", str(tiny_llama_dir), "--prompt", "Jane",
                            "--max-new-tokens", "0", "--device", "cpu"], "max_new_tokens")
    one_line_error(capsys, ["generate", "--model", str(tiny_llama_dir), "--prompt", "Jane",
                            "--lens", "nope", "--device", "cpu"], "unknown lens 'nope'")


@pytest.fixture(scope="module")
def gpt2_adapter(tmp_path_factory, tokenizer, tiny_gpt2_dir):
    """A LoRA adapter trained (well, initialised) on the tiny GPT-2."""
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(tiny_gpt2(tokenizer), LoraConfig(r=2, target_modules=["c_attn"]))
    path = tmp_path_factory.mktemp("gpt2-adapter")
    model.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def wide_llama_adapter(tmp_path_factory, tokenizer):
    """A LoRA adapter for a Llama of another width than the tiny Llama's."""
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(tiny_llama(tokenizer, hidden_size=48, intermediate_size=64),
                           LoraConfig(r=2, target_modules=["q_proj", "v_proj"]))
    path = tmp_path_factory.mktemp("wide-adapter")
    model.save_pretrained(path)
    return path


def test_adapter_for_another_base_model_is_a_one_line_error(tiny_llama_dir, gpt2_adapter,
                                                             wide_llama_adapter, capsys):
    for adapter in (gpt2_adapter, wide_llama_adapter):
        one_line_error(capsys, ["generate", "--model", str(tiny_llama_dir), "--adapter", str(adapter),
                                "--prompt", "Jane", "--device", "cpu"], "adapter does not fit")


def test_generate_with_an_adapter_folder_as_the_model(tmp_path, tokenizer, tiny_llama_dir, capsys):
    from peft import LoraConfig, get_peft_model

    tuned = get_peft_model(tiny_llama(tokenizer, initializer_range=0.3),
                           LoraConfig(r=2, target_modules=["q_proj"], init_lora_weights=False))
    tuned.peft_config["default"].base_model_name_or_path = str(
        save_model_dir(tiny_llama(tokenizer, initializer_range=0.3), tokenizer, tmp_path / "base"))
    tuned.save_pretrained(tmp_path / "adapter")
    args = ["generate", "--model", str(tmp_path / "adapter"), "--layers", "2", "--prompt", "Jane Doe",
            "--max-new-tokens", "6", "--device", "cpu"]
    assert main(args) == 0
    with_adapter = capsys.readouterr().out
    assert main(args[:2] + [str(tmp_path / "base")] + args[3:]) == 0
    assert capsys.readouterr().out != with_adapter  # the adapter was applied
