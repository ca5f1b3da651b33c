"""Shared fixtures: tiny models in folders, and an isolated model cache per test session."""

from __future__ import annotations

import os
from pathlib import Path

# Before anything imports huggingface_hub, which reads these once: tests never reach a hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
from tiny import save_model_dir, tiny_gpt2, tiny_llama, tiny_tokenizer  # noqa: E402

# Converting an embedded model takes about a minute, so integration tests share the user's
# cache (where `make demo` put it) unless PIILAB_CACHE says otherwise; unit tests that need a
# fresh cache use the `fresh_cache` fixture.


@pytest.fixture(scope="session")
def tokenizer():
    return tiny_tokenizer()


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory, tokenizer) -> Path:
    return save_model_dir(tiny_llama(tokenizer), tokenizer, tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def tiny_gpt2_dir(tmp_path_factory, tokenizer) -> Path:
    return save_model_dir(tiny_gpt2(tokenizer), tokenizer, tmp_path_factory.mktemp("tiny-gpt2"))


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models and small decode steps run fastest on one torch thread, more so on a CPU
    shared with other work (two threads mostly wait for each other). Modules opt in with
    `pytestmark = pytest.mark.usefixtures("one_thread")`."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def torch_settings_kept():
    """For modules that run a benchmark's `main` in-process, which sets torch's thread count and
    TF32 as its command line asks: both put back afterwards, for the modules after it."""
    import torch

    before = torch.get_num_threads(), torch.backends.cuda.matmul.allow_tf32
    yield
    torch.set_num_threads(before[0])
    torch.backends.cuda.matmul.allow_tf32 = before[1]


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("PIILAB_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"
