"""`piilab data build | synth | stats`: the data pipeline (piilab.data.build) on the command line."""

from __future__ import annotations

import argparse
import json
import logging

from piilab.data import (
    BuildConfig,
    MixSpec,
    build_dataset,
    dataset_stats,
    write_synthetic,
)
from piilab.data.build import GENERATORS
from piilab.data.compose import ComposeConfig
from piilab.data.instruct import PROMPT_STYLES
from piilab.data.real import REAL_SETS
from piilab.data.sources import FORMATS, SourceSpec
from piilab.data.synth import SynthConfig
from piilab.errors import PiilabError
from piilab.io import check_output_file

log = logging.getLogger(__name__)


def _names(values: list[str] | None) -> list[str] | None:
    """'NAME,EMAIL' and 'NAME EMAIL' alike."""
    if values is None:
        return None
    return [part for value in values for part in value.split(",") if part.strip()]


def register(subparsers: argparse._SubParsersAction) -> None:
    data = subparsers.add_parser("data", help="build, synthesise and inspect instruction datasets")
    verbs = data.add_subparsers(dest="data_command", metavar="VERB", required=True)

    build = verbs.add_parser("build", help="corpora + synthetic + Alpaca -> train.jsonl, test.jsonl, card.json")
    build.add_argument("--source", action="append", default=[], metavar="FORMAT:PATH",
                       help=f"a corpus file, glob or directory; FORMAT one of {', '.join(FORMATS)} "
                       "(a bare PATH is detected); repeatable")
    build.add_argument("--real", action="append", default=[], metavar="NAME",
                       help=f"add a shipped real-text set ({', '.join(REAL_SETS)}; DATA_SOURCES.md beside it)")
    build.add_argument("--carriers", type=int, default=0, metavar="N",
                       help="add N texts of the --real sets with composed PII sentences inserted (default 0)")
    build.add_argument("--synthetic", type=int, default=0, metavar="N", help="add N synthetic documents")
    build.add_argument("--generator", default="templates", choices=GENERATORS,
                       help="synthetic generator: templates (default, synth.py) or compose (frames, docs/data.md)")
    build.add_argument("--genres", nargs="+", metavar="GENRE",
                       help="the synthetic generator's genres (default: all of them; "
                            "the templates have 5, compose 12)")
    build.add_argument("--excerpts", type=float, default=0.0, metavar="SHARE",
                       help="compose: replace SHARE of its documents by a few of their own lines (default 0)")
    build.add_argument("--mix", action="append", default=[], metavar="alpaca:PATH:FRACTION",
                       help="mix Alpaca-style rows in as FRACTION of each split; repeatable")
    build.add_argument("--test-size", type=float, default=0.1, help="share of documents in test (default 0.1)")
    build.add_argument("--heldout-share", type=float, default=0.5,
                       help="template splits: share of test from templates held out entirely (default 0.5)")
    build.add_argument("--split-by", default="auto",
                       help="auto (template if documents have one, else document), document, template, field:NAME")
    build.add_argument("--seed", type=int, default=0)
    build.add_argument("--labels", nargs="+", metavar="LABEL", help="label set (default: the seven)")
    build.add_argument("--crosswalk", metavar="FILE", help="CSV laid over the shipped label crosswalk")
    build.add_argument("--prompt-style", default="default", choices=sorted(PROMPT_STYLES))
    build.add_argument("--max-chars", type=int, default=2000, help="window size in characters (~4 per token)")
    build.add_argument("--overlap", type=int, default=200, help="characters shared by consecutive windows")
    build.add_argument("--language", nargs="+", metavar="CODE", help="keep only these languages (e.g. en)")
    build.add_argument("--no-dedup", action="store_true", help="keep duplicate texts")
    build.add_argument("--strict", action="store_true", help="any skipped or repaired bad record is an error")
    build.add_argument("--out", required=True, metavar="DIR")
    build.set_defaults(func=run_build)

    synth = verbs.add_parser("synth", help="write synthetic PII documents as span JSONL")
    synth.add_argument("-n", "--n", type=int, default=1000, help="number of documents")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--generator", default="templates", choices=GENERATORS)
    synth.add_argument("--locales", nargs="+", help="Faker locales (default: the generator's own set)")
    synth.add_argument("--genres", nargs="+", help="genres (default: all of the generator's)")
    synth.add_argument("--excerpts", type=float, default=0.0, metavar="SHARE",
                       help="compose: replace SHARE of its documents by a few of their own lines (default 0)")
    synth.add_argument("--out", required=True, metavar="FILE.jsonl")
    synth.set_defaults(func=run_synth)

    stats = verbs.add_parser("stats", help="recount a built dataset and check it against its card")
    stats.add_argument("dir", metavar="DIR")
    stats.add_argument("--json", action="store_true", help="print the figures as JSON")
    stats.set_defaults(func=run_stats)


def run_build(args: argparse.Namespace) -> int:
    config = BuildConfig(
        out=args.out,
        sources=[SourceSpec.parse(s) for s in args.source],
        real=args.real,
        carriers=args.carriers,
        synthetic=args.synthetic,
        generator=args.generator,
        synthetic_genres=_names(args.genres),
        excerpts=args.excerpts,
        mix=[MixSpec.parse(m) for m in args.mix],
        test_size=args.test_size,
        heldout_share=args.heldout_share,
        split_by=args.split_by,
        seed=args.seed,
        labels=_names(args.labels),
        crosswalk=args.crosswalk,
        prompt_style=args.prompt_style,
        max_chars=args.max_chars,
        overlap=args.overlap,
        languages=_names(args.language),
        dedup=not args.no_dedup,
        strict=args.strict,
    )
    card = build_dataset(config)
    for name, source in card["sources"].items():
        log.info("%s: %d in, %d written, %d skipped%s", name, source["records_in"], source["written"],
                 source["skipped"], f" ({', '.join(f'{n} {r}' for r, n in source['skip_reasons'].items())})"
                 if source["skipped"] else "")
    return 0


def run_synth(args: argparse.Namespace) -> int:
    check_output_file(args.out, "--out")
    config_class = ComposeConfig if args.generator == "compose" else SynthConfig
    chosen = {key: value for key, value in (("locales", args.locales), ("genres", args.genres),
                                            ("excerpt_share", args.excerpts)) if value}
    if "excerpt_share" in chosen and args.generator != "compose":
        raise PiilabError("--excerpts needs --generator compose")
    n = write_synthetic(config_class(n=args.n, seed=args.seed, **chosen), args.out)
    log.info("wrote %d synthetic documents to %s", n, args.out)
    return 0


def run_stats(args: argparse.Namespace) -> int:
    stats = dataset_stats(args.dir)
    if args.json:
        print(json.dumps(stats, indent=2, ensure_ascii=False))
        return 0
    print(f"dataset {stats['path']}")
    for split, s in stats["splits"].items():
        check = {True: "matches card", False: "DIFFERS FROM CARD"}.get(s.get("sha256_matches_card"), "no card")
        print(f"\n{split}: {s['records']} records, {s['documents']} documents, "
              f"{s['records_without_pii']} without PII; sha256 {s['sha256'][:12]} ({check})")
        print("  by source: " + (", ".join(f"{k} {v}" for k, v in s["by_source"].items()) or "-"))
        print("  by label:  " + (", ".join(f"{k} {v}" for k, v in s["by_label"].items()) or "-"))
        if "heldout_template" in s:
            print("  held-out template: " + ", ".join(f"{k} {v}" for k, v in s["heldout_template"].items()))
        for key, length in s["lengths"].items():
            if length.get("n"):
                print(f"  {key}: mean {length['mean']}, p50 {length['p50']:.0f}, p95 {length['p95']:.0f}, "
                      f"max {length['max']}")
    for name, source in stats.get("sources", {}).items():
        print(f"\nsource {name}: {source['records_in']} in, {source['written']} written, {source['skipped']} skipped")
    return 0 if all(s.get("sha256_matches_card", True) for s in stats["splits"].values()) else 1
