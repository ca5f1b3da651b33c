import json
from pathlib import Path

from piilab.cli import main
from piilab.eval.report import (
    by_model,
    earliest_good_layer,
    earliest_line,
    layer_axis,
)


def make_results(folder: Path, adapter: Path | None, tuned_model: str = "m") -> None:
    """Results of a vanilla model "m" and a tuned one: "m" + adapter, or a fully tuned model folder."""
    (folder / "outputs").mkdir(parents=True)
    runs = []
    tuned = (tuned_model, str(adapter) if adapter else None, [0.5, 0.9])
    for model, adapter_dir, f1s in (("m", None, [0.0, 0.1]), tuned):
        for layer, f1 in zip((2, 4), f1s):
            rid = f"{'vanilla' if (model, adapter_dir) == ('m', None) else 'tuned'}-L{layer}"
            (folder / "outputs" / f"{rid}.jsonl").write_text(json.dumps(
                {"id": "a", "output": f"out {rid} | pipe", "reference": "Jane (NAME)"}) + "\n")
            runs.append({
                "id": rid, "model": model, "adapter": adapter_dir, "layer": layer, "lens": "norm",
                "scores": {"BLEU": f1 / 2, "ROUGE-L": f1, "BERTScore": 0.8, "PII-F1": f1,
                           "PII-P": f1, "PII-R": f1, "PII-F5": f1, "degenerate": 0.0},
                "intervals": {"PII-F1": [max(f1 - 0.1, 0), min(f1 + 0.1, 1)]},
                "timing": {"decode_s": layer * 1.0, "per_sample_s": layer / 10},
                "outputs": f"outputs/{rid}.jsonl",
            })
    (folder / "results.json").write_text(json.dumps({
        "schema_version": 1, "piilab_version": "0", "created": "now",
        "dataset": {"path": "d", "sha256": "0" * 64, "n": 1},
        "metrics": {"bleu_signature": "sig", "bertscore_model": "enc"}, "runs": runs}))


def test_report_draws_charts_and_tables(tmp_path):
    adapter = tmp_path / "run"
    adapter.mkdir()
    (adapter / "train_log.csv").write_text("step,loss,lr,eval_loss\n1,2.0,0.001,\n2,1.0,0.001,1.1\n")
    results = tmp_path / "eval"
    make_results(results, adapter)
    assert main(["report", str(results)]) == 0
    report = results / "report"
    pngs = sorted(p.name for p in report.glob("*.png"))
    assert pngs == sorted([
        "model-m.png", "model-m-run.png", "metric-bleu.png", "metric-rouge-l.png",
        "metric-bertscore.png", "metric-pii-f1.png", "quality-vs-time.png", "loss-m-run.png",
    ])
    assert all((report / p).stat().st_size > 10_000 for p in pngs)  # real pictures, not empty
    md = (report / "report.md").read_text()
    assert "| m + run | 4 |" in md and "0.900 [0.800, 1.000]" in md
    assert "- m + run: layer 4" in md  # 0.5 < 0.9 * 0.9, so only the last layer qualifies
    assert "out tuned-L2 \\| pipe" in md  # example outputs, table-safe
    assert "piilab extract" not in md
    assert "BLEU: `sig`; BERTScore encoder: `enc`." in md


def test_report_names_no_bertscore_encoder_where_none_scored(tmp_path):
    from piilab.eval.report import metric_sources

    assert metric_sources({"metrics": {"bleu_signature": "sig", "bertscore_model": None}}) == "BLEU: `sig`."
    assert metric_sources({"metrics": {}}) == ""


def test_report_says_when_pii_outputs_are_what_extract_finds(tmp_path):
    results = tmp_path / "eval"
    make_results(results, None, tuned_model="t")
    saved = json.loads((results / "results.json").read_text())
    for run in saved["runs"]:
        run["as_extract"] = {"second_look": 0.05, "validators": ["extend", "check"]}
    (results / "results.json").write_text(json.dumps(saved))
    assert main(["report", str(results)]) == 0
    md = (results / "report" / "report.md").read_text()
    assert "what `piilab extract` finds in their texts (second look 0.05, validators extend, check)" in md


def test_models_of_other_depths_are_compared_at_shares_of_their_depth():
    runs = [{"model": "deep", "layer": layer, "depth": 30} for layer in (15, 30)] + \
        [{"model": "shallow", "layer": layer, "depth": 18} for layer in (9, 18)]
    assert layer_axis(by_model(runs)) == ({"deep": [0.5, 1.0], "shallow": [0.5, 1.0]},
                                          "exit layer / the model's layers")
    same = [{**run, "depth": 30} for run in runs]  # one depth, or results without depths: layers
    assert layer_axis(by_model(same)) == ({"deep": [15, 30], "shallow": [9, 18]}, "exit layer")
    older = [{k: v for k, v in run.items() if k != "depth"} for run in runs]
    assert layer_axis(by_model(older))[1] == "exit layer"


def test_a_fully_tuned_models_loss_curve_comes_from_its_own_folder(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "train_log.csv").write_text("step,loss,lr,eval_loss\n1,2.0,0.001,\n2,1.0,0.001,\n")
    results = tmp_path / "eval"
    make_results(results, None, tuned_model=str(run))
    assert main(["report", str(results)]) == 0
    assert len(list((results / "report").glob("loss-*.png"))) == 1


def test_earliest_good_layer():
    runs = [{"layer": L, "scores": {"PII-F1": f}} for L, f in ((8, 0.1), (16, 0.86), (30, 0.9))]
    assert earliest_good_layer(runs, "PII-F1", 0.95) == 16
    assert earliest_good_layer(runs, "PII-F1", 1.0) == 30
    # a last layer that scores 0 makes every layer 'within' it: no answer, said as such
    zero = [{"layer": L, "scores": {"PII-F1": 0.0}} for L in (8, 30)]
    assert earliest_good_layer(zero, "PII-F1", 0.9) is None
    assert earliest_line(zero, "PII-F1", 0.9) == "– (the last layer's PII-F1 is 0)"
    timed = [{**run, "timing": {"per_sample_s": t}} for run, t in zip(runs, (0.1, 0.2, 0.3))]
    assert earliest_line(timed, "PII-F1", 0.95) == "layer 16 (PII-F1 0.860 vs 0.900 at layer 30; 0.200 vs 0.300 s/sample)"


def test_report_without_results_is_an_error(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "results.json" in capsys.readouterr().err
