import pytest
import torch

from piilab import runtime
from piilab.errors import PiilabError


def test_auto_on_a_cpu_machine_is_float32_cpu(monkeypatch, caplog):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with caplog.at_level("INFO", logger="piilab.runtime"):
        chosen = runtime.choose_runtime()
    assert (chosen.device.type, chosen.dtype) == ("cpu", torch.float32)
    assert "no CUDA or MPS device" in caplog.text  # the reason is logged


def test_explicit_dtype_wins():
    assert runtime.choose_runtime("cpu", "bfloat16").dtype == torch.bfloat16


def test_cuda_requested_without_cuda_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(PiilabError, match="no CUDA device"):
        runtime.choose_runtime("cuda")
