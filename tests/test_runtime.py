import os
import platform

import pytest
import torch

from piilab import runtime, threads
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


@pytest.fixture
def fresh_thread_choice(monkeypatch):
    """A process that has not chosen its threads yet; torch's count restored afterwards."""
    before = torch.get_num_threads()
    monkeypatch.setattr(runtime, "_threads_reason", None)
    monkeypatch.setattr(runtime, "_threads_auto", runtime._threads_auto)  # choosing sets these two:
    monkeypatch.setattr(runtime, "_watch", runtime._watch)  # put back afterwards
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    yield
    torch.set_num_threads(before)


def test_a_busy_core_means_one_thread_fewer_and_the_reason_is_logged(
        fresh_thread_choice, monkeypatch, caplog):
    monkeypatch.setattr(threads, "usable_cpus", lambda: [0, 1])
    monkeypatch.setattr(threads, "physical_cores", lambda cpus: 2)
    monkeypatch.setattr(threads, "measure_busy", lambda cpus: (1.0, "/proc/stat over 0.2 s"))
    torch.set_num_threads(2)  # torch's default on two cores
    with caplog.at_level("INFO", logger="piilab.runtime"):
        runtime.choose_runtime("cpu")
    assert torch.get_num_threads() == 1
    assert "runtime: threads: 1 (auto: 2 usable cores, 1.0 of them busy with other work, " \
           "/proc/stat over 0.2 s)" in caplog.text
    # once per process: a second model load neither measures again nor changes the count
    monkeypatch.setattr(threads, "measure_busy", lambda cpus: pytest.fail("measured twice"))
    torch.set_num_threads(2)
    runtime.choose_runtime("cpu")
    assert torch.get_num_threads() == 2


@pytest.mark.parametrize("setting", ["env", "torch"])
def test_a_count_the_user_set_is_kept(fresh_thread_choice, monkeypatch, caplog, setting):
    monkeypatch.setattr(threads, "physical_cores", lambda cpus: 2)
    monkeypatch.setattr(threads, "measure_busy", lambda cpus: (0.0, "test"))
    torch.set_num_threads(2 if setting == "env" else 1)
    if setting == "env":
        monkeypatch.setenv("OMP_NUM_THREADS", "2")
    with caplog.at_level("INFO", logger="piilab.runtime"):
        runtime.configure_threads()
    assert torch.get_num_threads() == (2 if setting == "env" else 1)
    assert ("OMP_NUM_THREADS=2 set by the user" if setting == "env"
            else "torch.set_num_threads(1) was called") in caplog.text


@pytest.mark.parametrize("verb", [
    ["generate", "--prompt", "p"], ["extract", "t"], ["eval", "--model", "m", "--data", "d", "--out", "o"],
    ["train", "--out", "o"], ["lens", "train", "--data", "d", "--out", "o"], ["run", "x.yaml"], ["demo"],
])
def test_every_computing_verb_takes_threads(verb):
    from piilab.cli import make_parser

    args = make_parser().parse_args([*verb, "--threads", "3"])
    assert args.threads == 3


def test_threads_flag_reaches_torch(fresh_thread_choice, tiny_gpt2_dir, capsys, caplog):
    from piilab.cli import main

    wanted = 3 if torch.get_num_threads() != 3 else 2
    with caplog.at_level("INFO", logger="piilab.runtime"):
        code = main(["generate", "--model", str(tiny_gpt2_dir), "--prompt", "hi",
                     "--max-new-tokens", "2", "--threads", str(wanted)])
    assert code == 0, capsys.readouterr().err
    assert torch.get_num_threads() == wanted
    assert f"runtime: threads: {wanted} (--threads {wanted}" in caplog.text


def test_threads_below_one_is_a_one_line_error(fresh_thread_choice, tiny_gpt2_dir, capsys):
    from piilab.cli import main

    code = main(["generate", "--model", str(tiny_gpt2_dir), "--prompt", "hi", "--threads", "0"])
    assert code == 2
    assert capsys.readouterr().err.strip() == "piilab: error: --threads must be at least 1, got 0"


@pytest.mark.skipif(not (platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"),
                    reason="glibc's mallopt")
def test_decoding_keeps_freed_blocks_and_training_returns_them(monkeypatch):
    """A freed 64 MiB tensor stays with the process under keep_freed_blocks_for_decoding (the
    next pass reuses it without page faults), goes back to the OS under training's setting, and
    what decoding kept goes back when training's setting comes after it. Each in a fresh process:
    in this one, what earlier tests left on the heap decides where a block lands."""
    import subprocess
    import sys

    for name in [n for n in os.environ if n.startswith("MALLOC_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("MALLOC_ARENA_MAX", "2")
    assert runtime.keep_freed_blocks_for_decoding() is False  # glibc's own settings stand
    monkeypatch.delenv("MALLOC_ARENA_MAX")

    def returned_mib(order: str) -> float:
        done = subprocess.run([sys.executable, "-c", FREED_BLOCKS, order], capture_output=True,
                              text=True, env=dict(os.environ), timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
        return float(done.stdout)

    assert returned_mib("decoding") < 8
    assert returned_mib("training") > 56
    assert returned_mib("decoding,training") > 56


FREED_BLOCKS = """
import resource, sys
import torch
from piilab import runtime

SETTINGS = {"decoding": runtime.keep_freed_blocks_for_decoding,
            "training": runtime.return_large_blocks_to_the_os}
resident = lambda: int(open("/proc/self/statm").read().split()[1]) * resource.getpagesize() / 2**20
first, *then = sys.argv[1].split(",")
assert SETTINGS[first]()
block = torch.ones(64 << 20, dtype=torch.uint8)
before = resident()
del block  # MiB returned to the OS: by the free, or by the settings that come after it
for setting in then:
    assert SETTINGS[setting]()
print(before - resident())
"""
