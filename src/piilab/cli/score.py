"""`piilab score`: score what `piilab extract --output` found against labelled data."""

from __future__ import annotations

import sys


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "score", help="score an `extract --output` file against labelled data (exact and token "
                      "P/R/F1 per label)",
        description="Match the rows of FOUND (written by `piilab extract --input FORMAT:PATH "
                    "--output FOUND`) to the labelled documents of --gold by id, and score their "
                    "items' spans: exact match (start, end, label) and token level, per label and "
                    "per source, and items per 100 PII-free texts, as benchmarks/real_text.py "
                    "scores piilab and Presidio.")
    parser.add_argument("found", help="the JSONL file `piilab extract --output` wrote")
    parser.add_argument("--gold", required=True, action="append", metavar="FORMAT:PATH",
                        help="the labelled data it was extracted from (kaggle, ai4privacy, "
                             "presidio, conll, spans; repeatable)")
    parser.add_argument("--labels", help="comma-separated label set (default: piilab's seven); found "
                        "items of the labels it leaves out are set aside, not scored")
    parser.add_argument("--crosswalk", help="a CSV laid over the shipped label crosswalk")
    parser.add_argument("--language", nargs="+", metavar="CODE", help="only documents in these "
                        "languages (ai4privacy)")
    parser.add_argument("--out", metavar="FILE.json", help="also write the scores here (JSON)")
    parser.set_defaults(func=run)


def run(args) -> int:
    from piilab.eval.found import score_found
    from piilab.eval.span_scores import summary
    from piilab.io import check_output_file, write_json

    if args.out:
        check_output_file(args.out, "--out")  # before scoring: a bad path would lose the scores
    labels = args.labels.split(",") if args.labels else None
    scores = score_found(args.found, args.gold, labels=labels, crosswalk=args.crosswalk,
                         languages=args.language)
    # the resolved set (upper-cased, checked), not what was typed: gold was read with it
    sys.stdout.write(tables(scores, tuple(scores["labels"])))
    if args.out:
        write_json(args.out, {"found": args.found, "gold": args.gold, **summary(scores)})
    return 0


def tables(scores: dict, labels: tuple[str, ...]) -> str:
    """Markdown: P/R/F1 per source and overall, per label, and the noise on PII-free texts."""
    def row(*cells) -> str:
        return "| " + " | ".join(map(str, cells)) + " |\n"

    def prf(tally, label=None, unit: str = "spans") -> str:
        if not (tally.gold[label] if label else sum(tally.gold.values())):
            # nothing to find: no recall, so show what was (wrongly) found instead
            return f"no PII; {tally.pred[label] if label else sum(tally.pred.values())} {unit} found"
        return " / ".join(f"{x:.3f}" for x in tally.prf(label))

    sources = scores["sources"]
    texts = {**scores["sources_texts"], "all": scores["documents"]}
    out = [f"{scores['documents']} documents scored ({scores['without_row']} without a row, "
           f"{scores['without_document']} rows without a document, {sum(scores['left_out'].values())} "
           "labelled records left out)\n\n",
           row("source", "texts", "exact P / R / F1", "token P / R / F1"), row(*["---"] * 4)]
    for source in sorted(sources, key=lambda s: (s == "all", s)):
        out.append(row(source, texts[source], prf(sources[source]["exact"]),
                       prf(sources[source]["token"], unit="tokens")))
    exact = sources["all"]["exact"]
    out += ["\n", row("label", "gold", "exact P / R / F1"), row(*["---"] * 3)]
    for label in sorted(set(labels) | set(exact.gold) | set(exact.pred)):
        out.append(row(label, exact.gold[label], prf(exact, label)))
    out.append(f"\n{scores['fp_per_100_free']:.1f} items per 100 PII-free texts "
               f"(n={scores['free_texts']}); {scores['outside_label_set']} spans with a label "
               "outside the set" + (f" ({scores['set_aside']} of labels the set leaves out set aside)"
                                    if scores["set_aside"] else "") + "\n")
    return "".join(out)
