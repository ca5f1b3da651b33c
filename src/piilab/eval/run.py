"""Models × exit layers × test set → outputs and scores: `piilab eval`.

Outputs are appended to `outputs/<run-id>.jsonl` as each batch finishes, so a killed run
started again with the same arguments skips what is done and ends with the same results.json.
Under `torchrun` the samples are sharded across processes, each writing its own part file;
rank 0 merges the parts in dataset order and scores them.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from piilab import __version__
from piilab.data.dataset import dataset_file, read_records
from piilab.errors import PiilabError
from piilab.eval import as_extract, metrics
from piilab.eval.config import EvalConfig, ModelUnderTest
from piilab.eval.inputs import (
    changed_inputs,
    eval_inputs,
    previous_results,
    prune_stale_outputs,
    sha256_file,
)
from piilab.halving import cut_rows
from piilab.io import append_jsonl, done_ids, iter_jsonl, read_json, write_json, write_jsonl

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
CONFIG_FILE = "eval_config.json"


# ------------------------------------------------------------------ processes


@dataclass(frozen=True)
class Processes:
    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier()


def processes() -> Processes:
    """This process's place under torchrun / accelerate (gloo on CPU), or a single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Processes()
    import torch
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return Processes(dist.get_rank(), dist.get_world_size())


# ------------------------------------------------------------------ bookkeeping


def _saved_config(path: Path) -> dict[str, Any]:
    """eval_config.json as saved; unreadable is an error that says how to get past it."""
    try:
        saved = read_json(path)
    except PiilabError as err:
        saved = err
    if not isinstance(saved, dict):
        reason = saved if isinstance(saved, PiilabError) else f"{path}: not a JSON object"
        raise PiilabError(f"{reason}; pass --overwrite to start {path.parent} afresh "
                          "(its outputs are deleted), or choose another --out")
    return saved


def holds_results(out: Path) -> bool:
    """Whether a results folder holds anything decoded or scored (not just its settings)."""
    outputs = out / "outputs"
    return (out / "results.json").exists() or outputs.is_dir() and any(
        path.stat().st_size > 0 for path in outputs.glob("*.jsonl"))


def prepare_out_dir(config: EvalConfig, overwrite: bool, inputs: dict[str, Any],
                    run_ids: set[str]) -> Path:
    """Create or reuse the results folder; refuse one holding results of other arguments (a
    folder with only the settings of an eval that stopped before decoding is simply reused).

    Outputs of runs whose inputs changed (another test file or model at the same path) are not
    this eval's runs any more: they are deleted, and those runs decoded again.
    """
    out = Path(config.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        raise PiilabError(f"{out}: cannot write results there ({err.strerror})") from None
    saved_path = out / CONFIG_FILE
    identity = config.identity()
    if overwrite:
        shutil.rmtree(out / "outputs", ignore_errors=True)
        (out / "results.json").unlink(missing_ok=True)
    elif saved_path.exists() and holds_results(out):  # settings alone hold nothing to keep
        saved = _saved_config(saved_path)
        saved_inputs = saved.pop("inputs", None)
        if saved != identity:
            changed = sorted(k for k in set(saved) | set(identity) if saved.get(k) != identity.get(k))
            raise PiilabError(
                f"{out} holds results of an eval with other arguments ({', '.join(changed)} "
                "differ): pass --overwrite to replace them, or choose another --out"
            )
        if saved_inputs is None:
            log.warning("%s: written without fingerprints of its inputs (an earlier piilab): "
                        "every run is decoded again", out)
        for name in changed_inputs(saved_inputs or {}, inputs) if saved_inputs else ():
            log.warning("%s changed since %s was written: its runs are decoded and scored again",
                        name, out)
    prune_stale_outputs(out / "outputs", run_ids)
    write_json(saved_path, {**identity, "inputs": inputs})
    (out / "outputs").mkdir(exist_ok=True)
    return out


def check_layers(config: EvalConfig, config_of=None) -> dict[ModelUnderTest, list[int]]:
    """Each model's exit layers, checked against its depth before anything runs, and its tuned
    lens against its shape; `config_of(model)` stands in for reading each model's config (an
    experiment's model not trained yet)."""
    from piilab import models
    from piilab.layers.lenses import check_lens

    plan = {}
    for model in config.models:
        model_config = config_of(model) if config_of else models.model_config(model.adapter or model.spec)
        check_lens(config.lens_of(model), model_config, f"{model.spec}: --lens")
        depth = model_config.num_hidden_layers
        layers = list(model.layers or config.layers or [depth])
        bad = [layer for layer in layers if not 1 <= layer <= depth]
        if bad:
            raise PiilabError(
                f"{model.spec}: has layers 1..{depth}, so exit layer(s) "
                f"{', '.join(map(str, bad))} do not exist"
            )
        plan[model] = sorted(set(layers))
    return plan


# ------------------------------------------------------------------ decoding


def label_set(data: str, records: list[dict]) -> tuple[str, ...]:
    """The labels the prompts name: the dataset card's, else the default seven and every label
    the references use (a JSONL file has no card)."""
    from piilab.data.labels import DEFAULT_LABELS

    card = Path(data) / "card.json"
    if card.is_file():
        labels = read_json(card).get("labels")
        if labels:
            return tuple(labels)
    used = {s["label"] for r in records for s in r.get("spans") or ()}
    return tuple(DEFAULT_LABELS) + tuple(sorted(used - set(DEFAULT_LABELS)))


def answer_rules(records: list[dict], labels: tuple[str, ...], constrain: bool) -> list | None:
    """Per record, what its answer may copy: (text, labels) for a PII record, None for an
    instruction row (spans null), which decodes free; None for all when not constrained."""
    if not constrain:
        return None
    return [(r["text"], labels) if r.get("spans") is not None else None for r in records]


def decode_model(
    model_ut: ModelUnderTest, layers: list[int], records: list[dict], out: Path,
    config: EvalConfig, procs: Processes, inputs: str = "", labels: tuple[str, ...] = (),
) -> None:
    """Decode every unfinished (sample, layer) of one model, appending rows as batches finish."""
    from piilab import models
    from piilab.layers import decode as engine
    from piilab.models.prompts import format_for

    files = {layer: out / "outputs" / f"{config.run_id(model_ut, layer, inputs)}.jsonl"
             for layer in layers}
    parts = {layer: path.with_suffix(f".rank{procs.rank}.jsonl") if procs.world > 1 else path
             for layer, path in files.items()}
    done = {layer: done_ids(files[layer]) | done_ids(parts[layer]) for layer in layers}
    # Group unfinished samples by the layers they still lack, so that after an interruption
    # nothing already written is decoded again.
    groups: dict[tuple[int, ...], list[dict]] = {}
    place = {record["id"]: i for i, record in enumerate(records)}  # a sample's seed number
    for record in records[procs.rank::procs.world]:
        missing = tuple(L for L in layers if record["id"] not in done[L])
        if missing:
            groups.setdefault(missing, []).append(record)
    if not groups:
        return
    model, tokenizer = models.load_model(model_ut.spec, model_ut.adapter, device=config.device,
                                         dtype=config.dtype)
    trained_folder = models.trained_folder(model_ut.spec, model_ut.adapter)
    prompt_format = format_for(tokenizer, trained_folder)
    decoding = config.decoding_settings()
    label = model_ut.spec + (f" + {Path(model_ut.adapter).name}" if model_ut.adapter else "")
    if model_ut.lens:
        label += f" [{model_ut.lens} lens]"
    bar = tqdm(total=sum(len(pending) * len(wanted) for wanted, pending in groups.items()),
               desc=f"decoding {label}", unit="output", disable=not procs.main)

    def emit(layer: int, batch: list[dict], texts: list[str], seconds: float) -> None:
        """Append one layer's outputs of a batch (its seconds shared among its samples)."""
        for record, text in zip(batch, texts):
            append_jsonl(parts[layer], {"id": record["id"], "output": text,
                                        "reference": record["completion"],
                                        "decode_s": round(seconds / len(batch), 6)})
        bar.update(len(batch))

    settings = as_extract.settings_for(config.data, labels) if config.as_extract else None
    eos = engine.eos_token_ids(model, tokenizer)
    cut = {layer: [0, 0] for layer in layers}  # per exit layer: answers max_new_tokens ended, all
    for wanted, pending in groups.items():
        searching = [config.as_extract and r.get("spans") is not None for r in pending]
        searched = [r for r, yes in zip(pending, searching) if yes]
        plain = [r for r, yes in zip(pending, searching) if not yes]
        for start in range(0, len(plain), config.batch_size):
            batch = plain[start:start + config.batch_size]
            prompts = [prompt_format.render(tokenizer, r["prompt"]) for r in batch]
            result = engine.generate(
                model, tokenizer, prompts, layers=list(wanted), lens=config.lens_of(model_ut),
                decoding=decoding, batch_size=config.batch_size,
                add_special_tokens=prompt_format.add_special_tokens, progress=False,
                return_details=True, answers=answer_rules(batch, labels, config.constrain),
                seed_numbers=[place[r["id"]] for r in batch],
            )
            for layer in wanted:
                emit(layer, batch, result.texts[layer], result.seconds[layer])
                cut[layer][0] += len(cut_rows(tokenizer, result.token_ids[layer], decoding, eos))
                cut[layer][1] += len(batch)
        if searched:  # PII records as `piilab extract` finds their PII (eval.as_extract)
            as_extract.decode(
                model, tokenizer, searched, wanted, emit,
                settings=settings,
                second_look=as_extract.threshold_of(config.second_look, trained_folder),
                validators=config.validators,
                prompt_format=prompt_format, lens=config.lens_of(model_ut), decoding=decoding,
                batch_size=config.batch_size, constrain=config.constrain)
    bar.close()
    if any(ended for ended, _ in cut.values()):  # early layers often write until the budget
        log.info("%s: answers cut at max_new_tokens %d, scored as written: %s", label,
                 decoding.max_new_tokens, ", ".join(f"layer {layer} {ended} of {every}"
                                                    for layer, (ended, every) in cut.items() if every))


def finalize_outputs(path: Path, order: dict[str, int]) -> None:
    """Fold every process's part file into the outputs file and keep it in dataset order.

    A row of a sample this test set lacks, or a second row of one, is dropped (logged), so the
    file holds each sample of these inputs once.
    """
    parts = sorted(path.parent.glob(f"{path.stem}.rank*.jsonl"))
    rows = list(iter_jsonl(path)) if path.exists() else []
    for part in parts:
        rows += list(iter_jsonl(part))
    kept: dict[str, dict] = {}
    for row in rows:
        if isinstance(row, dict) and row.get("id") in order:
            kept.setdefault(row["id"], row)
    if len(kept) != len(rows):
        log.warning("%s: dropped %d rows of samples not in this test set, or repeated", path,
                    len(rows) - len(kept))
    ranks = [order[rid] for rid in kept]
    if parts or len(kept) != len(rows) or ranks != sorted(ranks):
        write_jsonl(path, sorted(kept.values(), key=lambda row: order[row["id"]]))
    for part in parts:
        part.unlink()


# ------------------------------------------------------------------ scoring


def scorable(records: list[dict], where: Path) -> tuple[list[dict], int]:
    """The records eval scores, and how many it skipped: as in training, a record with an empty
    prompt or completion is left out (and counted), never scored as an answer to nothing."""
    kept = [r for r in records if r["prompt"] and r["completion"] != ""]
    skipped = len(records) - len(kept)
    if not kept:
        raise PiilabError(f"{where}: no record to score: each has an empty prompt or completion")
    if skipped:
        log.warning("%s: skipped %d of %d records with an empty prompt or completion (training "
                    "skips them too)", where, skipped, len(records))
    return kept, skipped


def template_subsets(records: list[dict]) -> dict[str, list[dict]]:
    """Synthetic test records split by whether their template was seen in training."""
    flags = [(r.get("meta") or {}).get("heldout_template") for r in records]
    if not any(flag is not None for flag in flags):
        return {}
    subsets = {"heldout_templates": [r for r, f in zip(records, flags) if f is True],
               "seen_templates": [r for r, f in zip(records, flags) if f is False]}
    return {name: chosen for name, chosen in subsets.items() if chosen}


def score_run(
    model_ut: ModelUnderTest, layer: int, records: list[dict], out: Path, config: EvalConfig,
    scorer: metrics.BertScore | None, inputs: dict[str, Any], labels: tuple[str, ...] = (),
) -> dict[str, Any]:
    """One entry of results.json["runs"], from the finished outputs file."""
    rid = config.run_id(model_ut, layer, inputs["key"])
    rows = {row["id"]: row for row in iter_jsonl(out / "outputs" / f"{rid}.jsonl")}
    missing = [r["id"] for r in records if r["id"] not in rows]
    if missing:
        raise PiilabError(f"{rid}: {len(missing)} samples have no output (first: {missing[0]})")
    ordered = [rows[r["id"]] for r in records]
    scores = metrics.score(
        [row["output"] for row in ordered], [r["completion"] for r in records],
        metrics=config.metrics, bleu=config.bleu, bertscorer=scorer, label_set=labels,
        bootstrap=config.bootstrap, seed=config.seed,
    )
    decode_s = sum(row.get("decode_s", 0.0) for row in ordered)
    subsets = {
        name: metrics.score([rows[r["id"]]["output"] for r in chosen],
                            [r["completion"] for r in chosen],
                            metrics=[m for m in config.metrics if m != "bertscore"],
                            bleu=config.bleu, label_set=labels).scores | {"n": len(chosen)}
        for name, chosen in template_subsets(records).items()
    }
    found_as = {"as_extract": {  # the threshold this model's runs used, "auto" resolved
        "second_look": as_extract.threshold_of(config.second_look, inputs["trained_folder"]),
        "validators": list(config.validators)}} if config.as_extract else {}
    return {
        "id": rid, "model": model_ut.spec, "adapter": model_ut.adapter, "layer": layer,
        "trained_folder": inputs["trained_folder"], "inputs_key": inputs["key"],
        "lens": config.lens_of(model_ut), "decoding": config.decoding,
        "constrained": config.constrain, "n": len(records),
        **found_as,
        "scores": scores.scores, "intervals": scores.intervals, "per_label": scores.per_label,
        "counts": scores.counts, "subsets": subsets,
        "timing": {"decode_s": round(decode_s, 4), "per_sample_s": round(decode_s / len(records), 6)},
        "outputs": f"outputs/{rid}.jsonl",
        "outputs_sha256": sha256_file(out / "outputs" / f"{rid}.jsonl"),
    }


def evaluate(config: EvalConfig, overwrite: bool = False) -> dict[str, Any]:
    """Run the evaluation (resuming when the folder has part of it) and return results.json.
    The results folder is this eval's alone while it runs (its main process holds the lock)."""
    from contextlib import nullcontext

    from piilab.io import written_alone

    with written_alone(config.out, "--out") if processes().main else nullcontext():
        return _evaluate(config, overwrite)


def _evaluate(config: EvalConfig, overwrite: bool) -> dict[str, Any]:
    """evaluate(), with the results folder held."""
    from piilab import models

    procs = processes()
    records, skipped = scorable(read_records(config.data, "test")[: config.limit],
                                dataset_file(config.data, "test"))
    ids = [r["id"] for r in records]
    if len(set(ids)) != len(ids):
        raise PiilabError(f"{config.data}: record ids are not unique")
    plan = check_layers(config)
    labels = label_set(config.data, records)
    if config.as_extract:  # before any decoding: a test set extract would not prompt is refused
        as_extract.check_prompts(records, as_extract.settings_for(config.data, labels),
                                 dataset_file(config.data, "test"))
    inputs = eval_inputs(config, plan)
    of_model = dict(zip(plan, inputs["models"]))
    run_ids = {config.run_id(m, layer, of_model[m]["key"]) for m, layers in plan.items()
               for layer in layers}
    out = prepare_out_dir(config, overwrite, inputs, run_ids) if procs.main else Path(config.out)
    procs.barrier()

    for model_ut, layers in plan.items():
        decode_model(model_ut, layers, records, out, config, procs, of_model[model_ut]["key"], labels)
    procs.barrier()
    if not procs.main:
        return {}

    order = {rid: i for i, rid in enumerate(ids)}
    for model_ut, layers in plan.items():
        for layer in layers:
            rid = config.run_id(model_ut, layer, of_model[model_ut]["key"])
            finalize_outputs(out / "outputs" / f"{rid}.jsonl", order)

    previous = previous_results(out / "results.json")
    cached = {run["id"]: run for run in previous.get("runs", [])
              if isinstance(run, dict) and "id" in run}
    scorer = metrics.BertScore(config.bertscore_model) if "bertscore" in config.metrics else None
    results = {
        "schema_version": SCHEMA_VERSION,
        "piilab_version": __version__,
        "created": previous.get("created") or dt.datetime.now(dt.timezone.utc).isoformat(
            timespec="seconds"),
        "dataset": {**inputs["dataset"], "path": str(dataset_file(config.data, "test")),
                    "n": len(records), **({"skipped_empty": skipped} if skipped else {})},
        "metrics": metrics.metrics_info(config.bleu, scorer),
        "config": config.identity(),
        "inputs": inputs,
        "runs": [],
    }
    for model_ut, layers in plan.items():
        depth = models.model_depth(model_ut.adapter or model_ut.spec)
        for layer in layers:
            rid = config.run_id(model_ut, layer, of_model[model_ut]["key"])
            old = cached.get(rid)
            if old and old.get("outputs_sha256") == sha256_file(out / "outputs" / f"{rid}.jsonl"):
                run = old  # scored before the interruption: nothing to recompute
            else:
                run = score_run(model_ut, layer, records, out, config, scorer, of_model[model_ut], labels)
            results["runs"].append({**run, "depth": depth})  # charts of models of other depths
            write_json(out / "results.json", results)  # keep what is scored if killed here
    log.info("results written to %s", out / "results.json")
    return results
