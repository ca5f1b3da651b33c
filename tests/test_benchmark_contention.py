"""benchmarks/contention.py's own bookkeeping, with extract and the busy loops faked: every busy
process it starts is stopped, with a busy process started before the run or `--late`."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
from helpers import load_script

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "contention.py"


class FakeBusy:
    def __init__(self, kind):
        self.kind, self.killed, self.waited = kind, False, False

    def kill(self):
        self.killed = True

    def wait(self):
        self.waited = True


@pytest.mark.parametrize("late", [[], ["--late", "0.01"]])
def test_every_busy_process_is_stopped_and_each_run_is_reported(monkeypatch, capsys, late):
    bench = load_script("contention_benchmark", SCRIPT)
    started = []
    monkeypatch.setattr(bench, "start_busy", lambda kind, cores: started.append(FakeBusy(kind)) or started[-1])
    seconds = iter([2.0, 3.0, 5.0])

    def run_extract(command, env, timeout):
        time.sleep(0.05)  # long enough for a late busy process to start
        return next(seconds), "items", "2: auto"

    monkeypatch.setattr(bench, "run_extract", run_extract)
    monkeypatch.setattr(sys, "argv", ["contention.py", "--busy", "python,decode", *late])
    bench.main()
    out = capsys.readouterr().out
    assert [busy.kind for busy in started] == ["python", "decode"]
    assert all(busy.killed and busy.waited for busy in started)
    assert "1.50x" in out and "2.50x" in out and out.count("yes") == 3
