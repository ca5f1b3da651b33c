"""piilab report on odd results: one-line errors naming the file, run and field; metrics one run
lacks, results without PII-F1 or BLEU, and results holding only some of the planned runs."""

from __future__ import annotations

import json
import logging

import pytest
from helpers import one_line_error
from test_report import make_results

from piilab.cli import main


def edit_runs(folder, change):
    """Rewrite results.json with `change(results)` applied."""
    results = json.loads((folder / "results.json").read_text())
    change(results)
    (folder / "results.json").write_text(json.dumps(results))


def set_field(key, value, run=0):
    return lambda results: results["runs"][run].__setitem__(key, value)


@pytest.mark.parametrize(("change", "message"), [
    (set_field("intervals", None), "runs[0] ('m' layer 2): intervals must be a mapping, got None"),
    (set_field("scores", None), "runs[0] ('m' layer 2): scores must be a mapping, got None"),
    (set_field("layer", "8"), "runs[0] ('m' layer '8'): layer must be int, got '8'"),
    (set_field("timing", {}), "runs[0] ('m' layer 2): timing lacks per_sample_s"),
    (set_field("scores", {"BLEU": "high"}), "runs[0] ('m' layer 2): scores['BLEU'] must be float, got 'high'"),
])
def test_odd_runs_are_one_line_errors_naming_file_run_and_field(tmp_path, capsys, change, message):
    make_results(tmp_path / "ev", None)
    edit_runs(tmp_path / "ev", change)
    one_line_error(capsys, ["report", str(tmp_path / "ev")], f"results.json: {message}")


def test_an_outputs_row_without_output_is_named_before_any_chart(tmp_path, capsys):
    make_results(tmp_path / "ev", None)
    (tmp_path / "ev" / "outputs" / "vanilla-L2.jsonl").write_text('{"id": "x"}\n')
    one_line_error(capsys, ["report", str(tmp_path / "ev")],
                   "vanilla-L2.jsonl: line 1: an outputs row needs 'output' as a string")
    assert not list((tmp_path / "ev" / "report").glob("*.png"))


def test_a_file_given_as_the_results_folder(tmp_path, capsys):
    (tmp_path / "r.json").write_text("{}")
    one_line_error(capsys, ["report", str(tmp_path / "r.json")], "r.json: not a folder")


def test_a_metric_one_run_lacks_is_drawn_and_tabled_as_missing(tmp_path):
    make_results(tmp_path / "ev", tmp_path / "run")
    edit_runs(tmp_path / "ev", lambda r: r["runs"][3]["scores"].pop("PII-F1"))
    assert main(["report", str(tmp_path / "ev")]) == 0
    rows = (tmp_path / "ev" / "report" / "report.md").read_text().splitlines()
    last = next(row for row in rows if row.startswith("| m + run | 4 |"))
    assert last.split(" | ")[7] == "–"  # its PII-F1 cell
    assert (tmp_path / "ev" / "report" / "quality-vs-time.png").exists()


@pytest.mark.parametrize(("kept", "quality"), [(["ROUGE-L"], "ROUGE-L"), (["BERTScore"], "BERTScore"),
                                               (["degenerate"], None)])
def test_the_quality_metric_is_one_the_results_have(tmp_path, kept, quality):
    """PII-F1, else BLEU, ROUGE-L, BERTScore: `eval --metrics rouge` results are reported."""
    make_results(tmp_path / "ev", None)

    def keep_only(results):
        for run in results["runs"]:
            run["scores"] = {k: v for k, v in run["scores"].items() if k in kept}
    edit_runs(tmp_path / "ev", keep_only)
    assert main(["report", str(tmp_path / "ev")]) == 0
    md = (tmp_path / "ev" / "report" / "report.md").read_text()
    assert (f"of the last layer's {quality}" in md) if quality else "Earliest layer" not in md
    assert (tmp_path / "ev" / "report" / "quality-vs-time.png").exists() is bool(quality)


def test_a_report_of_only_some_planned_runs_says_it_is_partial(tmp_path, caplog):
    make_results(tmp_path / "ev", tmp_path / "run")
    adapter = str(tmp_path / "run")
    edit_runs(tmp_path / "ev", lambda r: r.update(
        runs=r["runs"][:3], config={"models": [{"spec": "m"}, {"spec": "m", "adapter": adapter}],
                                    "layers": [2, 4], "lens": "norm"}))
    with caplog.at_level(logging.WARNING):
        assert main(["report", str(tmp_path / "ev")]) == 0
    assert "the report is partial: results.json lacks 1 planned run(s): m + run layer 4" in caplog.text
    assert "**Partial:**" in (tmp_path / "ev" / "report" / "report.md").read_text()
    caplog.clear()
    edit_runs(tmp_path / "ev", lambda r: r["config"].update(layers=[2]))  # all there: no note
    assert main(["report", str(tmp_path / "ev")]) == 0
    assert "partial" not in caplog.text
