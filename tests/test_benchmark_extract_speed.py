"""benchmarks/extract_speed.py's bookkeeping, with the model and `extract` faked: the reference
runs once, every other configuration `--repeats` times, and the verdict judges the median."""

from __future__ import annotations

from pathlib import Path

import piilab.models
import piilab.models.prompts
import piilab.pii_prompt
import pytest
from helpers import load_script

pytestmark = pytest.mark.usefixtures("torch_settings_kept")  # the benchmarks set both

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "extract_speed.py"


@pytest.fixture()
def bench(monkeypatch):
    bench = load_script("extract_speed_benchmark", SCRIPT)
    monkeypatch.setattr(piilab.models, "load_model", lambda *a, **k: ("model", "tokenizer"))
    monkeypatch.setattr(piilab.models, "trained_folder", lambda *a: None)
    monkeypatch.setattr(piilab.pii_prompt, "prompt_settings", lambda folder: None)
    monkeypatch.setattr(piilab.models.prompts, "format_for", lambda tokenizer, folder: None)
    return bench


def fake_runs(monkeypatch, bench, runs):
    """`timed_extract` answering from `runs`, a list of (seconds, answers) per timed call; the
    warm-up call (4 texts) is answered apart. Returns the configurations' calls, in order."""
    calls, runs = [], iter(runs)

    def timed_extract(model, tokenizer, texts, settings, fmt, batch, speedups, constrain, look):
        if len(texts) == 4:
            return 0.1, ["warm-up"] * 4, [[]] * 4
        calls.append(speedups.linear)
        seconds, answers = next(runs)
        return seconds, answers, [[] for _ in answers]

    monkeypatch.setattr(bench, "timed_extract", timed_extract)
    return calls


def test_the_verdict_judges_the_median_of_the_repeats(monkeypatch, capsys, bench):
    same, other = ["a"] * 10, ["a"] * 9 + ["b"]
    # the reference once; bf16 three times: 20, 10 and 12.5 texts/s, the third run's answers apart
    calls = fake_runs(monkeypatch, bench, [(10.0, same), (0.5, same), (1.0, same), (0.8, other)])
    rows = bench.main(bench.make_parser().parse_args(["--n", "10", "--configs", "plain,bf16",
                                                      "--second-look", "0"]))
    out = capsys.readouterr().out
    assert calls == ["exact", "bfloat16", "bfloat16", "bfloat16"]
    # the rows returned (benchmarks/gpu.py's extract part keeps them): the median and extremes
    assert [(r["config"], r["texts_per_s"], r["slowest"], r["fastest"], r["identical"]) for r in rows] == [
        ("plain", 1.0, 1.0, 1.0, 1.0), ("bf16", 12.5, 10.0, 20.0, 1.0)]
    assert "FAIL, best 12.5 texts/s" in out  # the fastest run alone (20 texts/s) would pass
    assert "10.0-20.0" in out
    assert "runs [3] answered differently from run 1" in out


def test_a_median_over_the_target_passes(monkeypatch, capsys, bench):
    same = ["a"] * 10
    fake_runs(monkeypatch, bench, [(10.0, same), (0.5, same), (0.6, same)])
    args = bench.make_parser().parse_args(["--n", "10", "--configs", "plain,bf16",
                                           "--second-look", "0", "--repeats", "2"])
    bench.main(args)
    out = capsys.readouterr().out
    assert "PASS, best 18.2 texts/s at 100.0% identical" in out and "differently" not in out


def test_spread_gives_the_median_and_the_extremes(bench):
    assert bench.spread([3.0, 1.0, 2.0]) == (2.0, 3.0, 1.0)
    assert bench.spread([4.0, 1.0]) == (2.5, 4.0, 1.0)


@pytest.mark.parametrize("value", ["0", "-1", "two"])
def test_repeats_must_be_a_whole_number_of_at_least_one(bench, value):
    with pytest.raises(SystemExit):
        bench.make_parser().parse_args(["--repeats", value])
