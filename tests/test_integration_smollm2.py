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


LEASE = ("Hi team, please send the signed lease to Mrs. Oluwaseun Adebayo-Hartmann at "
         "oluwaseun.ah@posteo.de or call her on +49 30 9018 2245. Her flat is at Schönhauser "
         "Allee 112, 10439 Berlin.")
TICKET = ("Ticket #88213: user kev_the_builder (Kevin O'Brien) reported that his SSN 078-05-1120 "
          "was shown on https://github.com/kobrien-dev profile page.")


def test_extract_without_a_model_uses_piilab_pii_on_issue_16s_texts(capsys):
    """Issue 16's two hand-written texts through `piilab extract` with no --model."""
    found = []
    for text in (LEASE, TICKET):
        assert main(["extract", text, "--device", "cpu"]) == 0
        found.append({(i["value"], i["label"]) for i in json.loads(capsys.readouterr().out)["items"]})
    # the shipped model of 2026-12-06 (real e-mails in training) with extract's defaults: the
    # greedy answers miss the lease's address, the ticket's "Kevin O'Brien" and URL; the second
    # look finds all three (the model's second choices where an item may begin), and `check`
    # relabels the SSN, which the model calls a phone number, ID_NUM (docs/evaluation.md)
    assert found[0] == {("Oluwaseun Adebayo-Hartmann", "NAME"), ("oluwaseun.ah@posteo.de", "EMAIL"),
                        ("+49 30 9018 2245", "PHONE_NUM"),
                        ("Schönhauser Allee 112, 10439 Berlin", "STREET_ADDRESS")}
    assert found[1] == {("kev_the_builder", "USERNAME"), ("Kevin O'Brien", "NAME"),
                        ("078-05-1120", "ID_NUM"), ("https://github.com/kobrien-dev", "URL_PERSONAL")}
