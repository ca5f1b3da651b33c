"""Charts and tables from a results directory: `piilab report RESULTS_DIR`.

Reads results.json (design.md, "Files a run writes") and writes PNG charts and report.md:
one chart per model (every metric against the layer, as the original experiment drew them),
one chart per metric comparing models, the training loss curve when a tuned model has one,
and quality against decoding time per layer.
"""

from __future__ import annotations

import csv
import json
import logging
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

from piilab.errors import PiilabError
from piilab.io import atomic_write, iter_jsonl, read_json

log = logging.getLogger(__name__)

CHART_METRICS = ["BLEU", "ROUGE-L", "BERTScore", "PII-F1"]
QUALITY_METRICS = ["PII-F1", "BLEU", "ROUGE-L", "BERTScore"]
"""The quality measure (quality against time, earliest good layer): the first the results have."""
TABLE_METRICS = ["BLEU", "ROUGE-L", "BERTScore", "PII-P", "PII-R", "PII-F1", "PII-F5",
                 "degenerate"]


def model_label(run: dict[str, Any]) -> str:
    """How a (model, adapter, lens) triple is named in charts and tables."""
    name = run["model"]
    if run.get("adapter"):
        name += f" + {Path(run['adapter']).name}"
    if run.get("lens", "norm") != "norm":
        name += f" [{run['lens']} lens]"
    return name


def has(run: dict[str, Any], metric: str) -> bool:
    """Whether a run was scored for a metric (one run may lack a metric the others have)."""
    return run["scores"].get(metric) is not None


def quality_metric(runs: list[dict[str, Any]]) -> str | None:
    """PII-F1 when the results have it, else the first of BLEU, ROUGE-L, BERTScore they have."""
    return next((m for m in QUALITY_METRICS if any(has(r, m) for r in runs)), None)


def by_model(runs: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Runs grouped by model label, each group sorted by layer."""
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for run in runs:
        groups[model_label(run)].append(run)
    return {label: sorted(group, key=lambda r: r["layer"]) for label, group in groups.items()}


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-").lower()


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    with atomic_write(path, "wb") as handle:
        fig.savefig(handle, format="png", dpi=110)
    _pyplot().close(fig)
    return path


def plot_model(label: str, runs: list[dict[str, Any]], path: Path) -> Path:
    """Every metric against the exit layer for one model."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    layers = [r["layer"] for r in runs]
    for metric in CHART_METRICS:
        scored = [r for r in runs if has(r, metric)]
        if scored:
            ax.plot([r["layer"] for r in scored], [r["scores"][metric] for r in scored],
                    marker="o", label=metric)
    ax.set(title=label, xlabel="exit layer", ylabel="score (0-1)", ylim=(-0.02, 1.02),
           xticks=layers)
    ax.grid(alpha=0.3)
    if ax.lines:  # results scored for none of the charted metrics draw an empty chart
        ax.legend(loc="best", fontsize=9)
    return _save(fig, path)


BY_LAYER = "exit layer"
"""The comparing charts' axis where every model has the same depth."""


def layer_axis(groups: dict[str, list[dict[str, Any]]]) -> tuple[dict[str, list[float]], str]:
    """Where each model's runs sit on a chart comparing models, and the axis's name: the exit
    layer, or, when the models have different depths (each run's "depth", in results since the
    thirteenth session), the layer as a share of its model's depth, so layer 9 of 18 sits beside
    layer 15 of 30."""
    depths = {run.get("depth") for runs in groups.values() for run in runs}
    if None in depths or len(depths) < 2:
        return {label: [r["layer"] for r in runs] for label, runs in groups.items()}, BY_LAYER
    return ({label: [r["layer"] / r["depth"] for r in runs] for label, runs in groups.items()},
            "exit layer / the model's layers")


def plot_metric(metric: str, groups: dict[str, list[dict[str, Any]]], path: Path) -> Path:
    """One metric against the exit layer, one line per model, with intervals when present."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    places, axis = layer_axis(groups)
    for nth, (label, runs) in enumerate(groups.items()):
        xs = [x for x, r in zip(places[label], runs) if has(r, metric)]
        runs = [r for r in runs if has(r, metric)]
        if not runs:
            continue
        values = [r["scores"][metric] for r in runs]
        [line] = ax.plot(xs, values, marker="o", label=label)
        bounds = [(r.get("intervals") or {}).get(metric) for r in runs]
        if all(bounds):
            ax.fill_between(xs, [b[0] for b in bounds], [b[1] for b in bounds], alpha=0.15)
        if axis != BY_LAYER:  # the layers themselves, since the axis shows shares
            for x, value, run in zip(xs, values, runs):  # each model's labels a line apart,
                below = value > 0.9  # and under points near the top, where the title is
                offset = -10 - 8 * nth if below else 3 + 8 * nth
                ax.annotate(f"L{run['layer']}", (x, value), fontsize=7, color=line.get_color(),
                            textcoords="offset points", xytext=(3, offset))
    ax.set(title=f"{metric} by exit layer", xlabel=axis, ylabel=metric, ylim=(-0.02, 1.02))
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    return _save(fig, path)


def plot_quality_vs_time(groups: dict[str, list[dict[str, Any]]], metric: str, path: Path) -> Path:
    """Quality against measured decoding time per sample, one point per exit layer."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for label, runs in groups.items():
        runs = [r for r in runs if has(r, metric)]
        if not runs:
            continue
        times = [r["timing"]["per_sample_s"] for r in runs]
        ax.plot(times, [r["scores"][metric] for r in runs], marker="o", label=label)
        for run, t in zip(runs, times):
            ax.annotate(f"L{run['layer']}", (t, run["scores"][metric]), fontsize=8,
                        textcoords="offset points", xytext=(4, 4))
    ax.set(title=f"{metric} against decoding time", xlabel="decoding time per sample (s)",
           ylabel=metric, ylim=(-0.02, 1.02))
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    return _save(fig, path)


def read_train_log(adapter_dir: str | Path) -> list[dict[str, float]]:
    """The (step, loss, eval_loss) rows a training run wrote, or [] when it has none."""
    path = Path(adapter_dir) / "train_log.csv"
    if not path.exists():
        return []
    with path.open() as handle:
        return [{k: float(v) for k, v in row.items() if v not in ("", None)}
                for row in csv.DictReader(handle)]


def plot_loss(label: str, rows: list[dict[str, float]], path: Path) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    train = [(r["step"], r["loss"]) for r in rows if "loss" in r]
    evals = [(r["step"], r["eval_loss"]) for r in rows if "eval_loss" in r]
    if train:
        ax.plot(*zip(*train), label="train loss")
    if evals:
        ax.plot(*zip(*evals), marker="o", label="eval loss")
    ax.set(title=f"Training loss: {label}", xlabel="step", ylabel="loss")
    ax.grid(alpha=0.3)
    ax.legend()
    return _save(fig, path)


def earliest_good_layer(runs: list[dict[str, Any]], metric: str, fraction: float) -> int | None:
    """The earliest layer whose `metric` is within `fraction` of the last layer's (None when the
    last layer scores 0: every layer would be 'within' it, which says nothing)."""
    runs = [r for r in runs if has(r, metric)]
    if not runs or not runs[-1]["scores"][metric]:
        return None
    target = fraction * runs[-1]["scores"][metric]
    return next(r["layer"] for r in runs if r["scores"][metric] >= target)


def earliest_line(runs: list[dict[str, Any]], metric: str, fraction: float) -> str:
    """The earliest good layer with its score and decoding time beside the last layer's."""
    runs = [r for r in runs if has(r, metric)]
    layer = earliest_good_layer(runs, metric, fraction)
    if layer is None:
        return f"– (the last layer's {metric} is 0)" if runs else f"– (not scored for {metric})"
    early, last = next(r for r in runs if r["layer"] == layer), runs[-1]
    line = f"layer {layer} ({metric} {early['scores'][metric]:.3f} vs {last['scores'][metric]:.3f} at layer {last['layer']}"
    times = [r.get("timing", {}).get("per_sample_s") for r in (early, last)]
    if layer != last["layer"] and all(times):
        line += f"; {times[0]:.3f} vs {times[1]:.3f} s/sample"
    return line + ")"


def _cell(run: dict[str, Any], metric: str) -> str:
    value = run["scores"].get(metric)
    if value is None:
        return "–"
    bounds = (run.get("intervals") or {}).get(metric)
    return f"{value:.3f} [{bounds[0]:.3f}, {bounds[1]:.3f}]" if bounds else f"{value:.3f}"


def scores_table(groups: dict[str, list[dict[str, Any]]]) -> str:
    """Markdown table: models × layers × metrics (with intervals), plus decoding time."""
    present = [m for m in TABLE_METRICS if any(has(r, m) for g in groups.values() for r in g)]
    heldout = any("heldout_templates" in r.get("subsets", {}) for g in groups.values() for r in g)
    head = ["Model", "Layer", *present, *(["PII-F1 held-out templates"] if heldout else []),
            "s/sample"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, runs in groups.items():
        for run in runs:
            cells = [label, str(run["layer"]), *(_cell(run, m) for m in present)]
            if heldout:
                subset = run.get("subsets", {}).get("heldout_templates", {})
                cells.append(f"{subset['PII-F1']:.3f} (n={subset['n']})" if "PII-F1" in subset
                             else "–")
            cells.append(f"{run['timing']['per_sample_s']:.3f}")
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def metric_sources(results: dict) -> str:
    """BLEU's signature and BERTScore's encoder, each where the results have it (an eval scored
    without BERTScore has no encoder to name)."""
    given = results.get("metrics", {})
    parts = [f"{name}: `{given[key]}`" for name, key in
             (("BLEU", "bleu_signature"), ("BERTScore encoder", "bertscore_model")) if given.get(key)]
    return "; ".join(parts) + "." if parts else ""


def scored_as_extract(runs: list[dict[str, Any]]) -> list[str]:
    """The report's note on runs whose PII outputs are what `piilab extract` finds (eval
    --second-look/--validators), so that their scores are not read as greedy answers'."""
    settings = {json.dumps(run["as_extract"], sort_keys=True) for run in runs if run.get("as_extract")}
    if not settings:
        return []
    said = "; ".join(f"second look {s['second_look']}, validators {', '.join(s['validators']) or 'none'}"
                     for s in map(json.loads, sorted(settings)))
    return [f"PII records' outputs are what `piilab extract` finds in their texts ({said}), not "
            "the model's answers as decoded (piilab.eval.as_extract).", ""]


def examples(results_dir: Path, run: dict[str, Any], n: int) -> list[dict[str, Any]]:
    """The first `n` rows of a run's outputs file, each checked for its output and reference."""
    path = results_dir / run["outputs"]
    rows = []
    if path.exists() and n:
        for lineno, row in enumerate(iter_jsonl(path), 1):
            for key in ("output", "reference"):
                if not isinstance(row, dict) or not isinstance(row.get(key), str):
                    raise PiilabError(f"{path}: line {lineno}: an outputs row needs '{key}' as a "
                                      "string")
            rows.append(row)
            if len(rows) >= n:
                break
    return rows


def _quote(text: str, limit: int = 160) -> str:
    text = text.replace("\n", " ⏎ ").replace("|", "\\|")
    return (text[:limit] + "…") if len(text) > limit else text


RUN_FIELDS: dict[str, Any] = {
    "model": str, "layer": int, "scores": dict[str, float | None], "timing": dict[str, float],
    "outputs": str, "adapter": str | None, "lens": str, "depth": int | None,
    "trained_folder": str | None, "intervals": dict[str, list[float]],
    "subsets": dict[str, dict[str, float]], "as_extract": dict,
}
"""The fields of a results.json run the report reads, with their types; the first five needed."""
NEEDED = ("model", "layer", "scores", "timing", "outputs")


def read_runs(path: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(runs, results) from a results.json, every field the report reads checked (a one-line
    error naming the file, the run and the field)."""
    from piilab.typecheck import checked_value

    results = read_json(path)
    if not isinstance(results, dict):
        raise PiilabError(f"{path}: expected a JSON object with 'runs' (piilab eval's results), "
                          f"got a {type(results).__name__}")
    runs = results.get("runs") or []
    if not isinstance(runs, list) or not runs:
        raise PiilabError(f"{path}: no runs to report")
    for i, run in enumerate(runs):
        missing = [key for key in NEEDED if not isinstance(run, dict) or key not in run]
        if missing:
            raise PiilabError(f"{path}: runs[{i}] lacks {', '.join(missing)}")
        where = f"{path}: runs[{i}] ({run['model']!r} layer {run['layer']!r})"
        for key, hint in RUN_FIELDS.items():
            if key in run:
                checked_value(run[key], hint, f"{where}: {key}")
        if "per_sample_s" not in run["timing"]:
            raise PiilabError(f"{where}: timing lacks per_sample_s")
        if any(len(bounds) != 2 for bounds in run.get("intervals", {}).values()):
            raise PiilabError(f"{where}: intervals must be [low, high] pairs")
    return runs, results


def missing_runs(runs: list[dict[str, Any]], results: dict[str, Any]) -> list[str]:
    """The planned runs (results' `config`: models and their layers) that results.json lacks,
    as "model layer L"; [] when it does not say what was planned."""
    config = results.get("config")
    if not isinstance(config, dict) or not isinstance(config.get("models"), list):
        return []
    have = {(r["model"], r.get("adapter"), r.get("lens", "norm"), r["layer"]) for r in runs}
    seen = {key[:3] for key in have}
    missing = []
    for model in config["models"]:
        if not isinstance(model, dict) or not isinstance(model.get("spec"), str):
            return []
        key = (model["spec"], model.get("adapter"), model.get("lens") or config.get("lens", "norm"))
        layers = model.get("layers") or config.get("layers")
        label = model_label({"model": key[0], "adapter": key[1], "lens": key[2]})
        if not layers:  # each model's last layer: planned is one run of it
            missing += [label] if key not in seen else []
            continue
        missing += [f"{label} layer {layer}" for layer in layers if (*key, layer) not in have]
    return missing


def build_report(
    results_dir: str | Path, out_dir: str | Path | None = None, n_examples: int = 3,
    good_fraction: float = 0.9,
) -> Path:
    """Write charts and report.md for a results directory; returns the report's path."""
    if n_examples < 0:
        raise PiilabError(f"--examples must be >= 0, got {n_examples}")
    if not 0 < good_fraction <= 1:
        raise PiilabError(f"--good-fraction must be in (0, 1], got {good_fraction}")
    results_dir = Path(results_dir)
    if results_dir.exists() and not results_dir.is_dir():
        raise PiilabError(f"{results_dir}: not a folder; give the eval's results folder (the one "
                          "holding results.json)")
    runs, results = read_runs(results_dir / "results.json")
    missing = missing_runs(runs, results)
    if missing:
        log.warning("%s: the report is partial: results.json lacks %d planned run(s): %s",
                    results_dir, len(missing), ", ".join(missing[:4]) + (", ..." if len(missing) > 4 else ""))
    out = Path(out_dir) if out_dir else results_dir / "report"
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        flag = "--out" if out_dir else "RESULTS/report"
        raise PiilabError(f"{out}: cannot write the report here ({flag}: {err.strerror or err})") from None
    groups = by_model(runs)
    shown = {id(run): examples(results_dir, run, n_examples) for run in runs}  # checked first

    charts: list[Path] = []
    for label, group in groups.items():
        charts.append(plot_model(label, group, out / f"model-{slug(label)}.png"))
    for metric in CHART_METRICS:
        if any(has(r, metric) for r in runs):
            charts.append(plot_metric(metric, groups, out / f"metric-{slug(metric)}.png"))
    quality = quality_metric(runs)
    if quality:
        charts.append(plot_quality_vs_time(groups, quality, out / "quality-vs-time.png"))
    for label, group in groups.items():
        # the adapter's folder, or the model's own when it is a full fine-tuning run; recorded
        # as an absolute path since results written before were read relative to the cwd
        rows = read_train_log(group[0].get("trained_folder") or group[0].get("adapter")
                              or group[0]["model"])
        if rows:
            charts.append(plot_loss(label, rows, out / f"loss-{slug(label)}.png"))

    dataset = results.get("dataset", {})
    md = [
        "# piilab report", "",
        f"Dataset: `{dataset.get('path')}` ({dataset.get('n')} samples, sha256 "
        f"`{str(dataset.get('sha256'))[:12]}`). Created {results.get('created')} by piilab "
        f"{results.get('piilab_version')}.", "",
        metric_sources(results), "",
        *scored_as_extract(runs),
        *([f"**Partial:** results.json lacks {len(missing)} planned run(s): "
           f"{', '.join(missing)}.", ""] if missing else []),
        "## Scores", "", scores_table(groups), "",
    ]
    if quality:
        md += [f"## Earliest layer within {good_fraction:.0%} of the last layer's {quality}", ""]
        md += [f"- {label}: {earliest_line(group, quality, good_fraction)}"
               for label, group in groups.items()]
    md += ["", "## Charts", ""]
    md += [f"![{chart.stem}]({chart.name})" for chart in charts]
    md += ["", "## Example outputs", ""]
    for label, group in groups.items():
        md += [f"### {label}", "", "| Layer | Output | Reference |", "|---|---|---|"]
        for run in group:
            for row in shown[id(run)]:
                md.append(f"| {run['layer']} | {_quote(row['output'])} | "
                          f"{_quote(row['reference'])} |")
        md.append("")
    report = out / "report.md"
    with atomic_write(report) as handle:
        handle.write("\n".join(md) + "\n")
    log.info("report written to %s (%d charts)", report, len(charts))
    return report
