"""The embedded SmolLM2-135M-Instruct: converted once, loads in seconds, knows Paris."""

import json
import time

import pytest
import torch

from piilab import models
from piilab.cli import main
from piilab.models import embedded

pytestmark = pytest.mark.integration


def test_info_reports_30_layers_and_hidden_576(capsys):
    assert main(["models", "info", "smollm2-135m", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert (info["num_layers"], info["hidden_size"], info["vocab_size"]) == (30, 576, 49152)
    assert info["chat_template"] is True


def test_second_resolve_does_not_convert_again(monkeypatch):
    first = models.ensure_embedded("smollm2-135m")
    weights = first / "model.safetensors"
    mtime = weights.stat().st_mtime_ns
    monkeypatch.setattr(embedded, "convert_gguf", lambda *a: pytest.fail("converted again"))
    start = time.perf_counter()
    assert models.resolve("smollm2-135m").path == str(first)
    assert time.perf_counter() - start < 1.0
    assert weights.stat().st_mtime_ns == mtime


def test_greedy_decoding_knows_paris():
    model, tokenizer = models.load_model("smollm2-135m", device="cpu")
    assert model.dtype == torch.float32
    inputs = tokenizer("The capital of France is", return_tensors="pt")
    out = model.generate(**inputs, max_new_tokens=5, do_sample=False)
    assert "Paris" in tokenizer.decode(out[0, inputs.input_ids.shape[1]:])
