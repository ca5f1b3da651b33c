"""`piilab report RESULTS_DIR [--out DIR]`."""

from __future__ import annotations

from piilab.eval.report import build_report


def register(subparsers) -> None:
    parser = subparsers.add_parser("report", help="charts and tables from an eval results folder")
    parser.add_argument("results", help="folder holding results.json (from `piilab eval`)")
    parser.add_argument("--out", help="where to write the report (default RESULTS/report)")
    parser.add_argument("--examples", type=int, default=3, help="example outputs per layer")
    parser.add_argument("--good-fraction", type=float, default=0.9,
                        help="name the earliest layer within this fraction of the last layer")
    parser.set_defaults(func=run)


def run(args) -> int:
    path = build_report(args.results, args.out, args.examples, args.good_fraction)
    print(path)
    return 0
