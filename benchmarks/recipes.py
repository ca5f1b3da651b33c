"""Training recipes compared over their seeds, from saved answers (no model runs).

One training's real-text figures are mostly its seed: the shipped recipe trained with another seed
moved them as much as any recipe change did (docs/evaluation.md). So a shipping decision compares
recipes, each trained with several seeds, on the mean and range of their trainings' figures.

Each training's answers are first saved per set by real_text.py, as
`real_text.py --adapter RUN --systems piilab --data benchmarks/real_text/SET.jsonl --out TRAINING/SET`
for SET in dev, test and test_contact; then

    python benchmarks/recipes.py shipped=T1,T2,T3 candidate=T4,T5,T6 [--sets dev,test,test_contact]

prints, per recipe, mean [min, max] over its trainings of exact F1 with extract's validators
(`--validators` names others) on
each set's held half (the test sets' text nobody on the team read; benchmarks/real_text/
DATA_SOURCES.md) and on the whole set, and predicted items per 100 PII-free texts.
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from real_text import LABELS, load_dev, with_validators  # noqa: E402

from piilab.errors import PiilabError  # noqa: E402
from piilab.eval.span_scores import score_texts, summary  # noqa: E402
from piilab.io import iter_jsonl  # noqa: E402
from piilab.shapes import EXTRACT_MODES, MODES, checked_modes  # noqa: E402

DATA = Path(__file__).resolve().parent / "real_text"
# Not test_third: that set chooses no recipe, rule or default (docs/evaluation.md, "The third
# held-out test set, measured once"), and recipes are what this compares.
SETS = ("dev", "test", "test_contact")


def is_held(record_id: str) -> bool:
    """The held half: the first hex digit of sha1(id) is 8-f (0-7 is the probe half)."""
    return hashlib.sha1(record_id.encode()).hexdigest()[0] in "89abcdef"


def training_figures(records: list[dict], answers: Path, modes=EXTRACT_MODES) -> dict[str, float]:
    """Exact F1 (with these validators) on the whole set and its held half, and items per 100
    PII-free texts."""
    if not answers.is_file():
        raise PiilabError(f"{answers}: no saved answers (run real_text.py --out for this set first)")
    saved = {row["id"]: row for row in iter_jsonl(answers)}
    lacking = [r["id"] for r in records if r["id"] not in saved]
    if lacking:
        raise PiilabError(f"{answers}: no answer for {len(lacking)} text(s), e.g. {lacking[0]}")
    validated = with_validators(records, saved, modes)
    whole = summary(score_texts(records, validated, LABELS))
    held = summary(score_texts([r for r in records if is_held(r["id"])], validated, LABELS))
    return {"f1": whole["sources"]["all"]["exact"]["micro"]["f"],
            "held": held["sources"]["all"]["exact"]["micro"]["f"],
            "items": whole["fp_per_100_free"]}


def spread(values: list[float], digits: int = 3) -> str:
    """"mean [min, max]" of one figure over a recipe's trainings; the value alone for one."""
    mean, low, high = (f"{v:.{digits}f}" for v in (statistics.fmean(values), min(values), max(values)))
    return mean if len(values) == 1 else f"{mean} [{low}, {high}]"


def recipe_table(recipes: dict[str, list[Path]], sets: tuple[str, ...], data: Path = DATA,
                 modes=EXTRACT_MODES) -> list[str]:
    """One markdown row per recipe: held-half F1, whole-set F1 and items for each set."""
    records = {name: load_dev(data / f"{name}.jsonl") for name in sets}
    head = ["recipe (trainings)"] + [f"{name} {figure}" for name in sets for figure in ("held F1", "F1", "items")]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for recipe, trainings in recipes.items():
        figures = [{name: training_figures(records[name], t / name / "predictions-piilab.jsonl", modes)
                    for name in sets}
                   for t in trainings]
        cells = [spread([f[name][figure] for f in figures], 1 if figure == "items" else 3)
                 for name in sets for figure in ("held", "f1", "items")]
        rows.append(f"| {recipe} ({len(trainings)}) | " + " | ".join(cells) + " |")
    return rows


def parse_recipe(arg: str) -> tuple[str, list[Path]]:
    name, sep, folders = arg.partition("=")
    if not sep or not name or not folders:
        raise PiilabError(f"{arg!r}: write a recipe as NAME=TRAINING[,TRAINING...]")
    return name, [Path(f) for f in folders.split(",")]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipes", nargs="+", metavar="NAME=TRAINING[,TRAINING...]")
    parser.add_argument("--sets", default=",".join(SETS), help="comma-separated sets in benchmarks/real_text")
    parser.add_argument("--validators", default=",".join(EXTRACT_MODES),
                        help=f"comma-separated modes of piilab.shapes ({', '.join(MODES)}; default "
                             "extract's; +MODE: extract's and MODE)")
    args = parser.parse_args(argv)
    try:
        modes = checked_modes(args.validators)  # "+postal": extract's and postal
        recipes = dict(parse_recipe(arg) for arg in args.recipes)
        print("\n".join(recipe_table(recipes, tuple(args.sets.split(",")), modes=modes)))
    except PiilabError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
