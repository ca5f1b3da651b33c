"""Benchmark: every metric for 1,000 (output, reference) pairs of PII answers, on CPU.

    python benchmarks/scoring.py [--pairs 1000] [--original 10] [--bootstrap 1000]

Prints pairs per second for piilab's scoring (one encoder load, batched) and, on a few pairs,
for the original experiment's approach (nltk BLEU, a new ROUGE scorer per pair, a
`bert_score.score` call per pair that reloads the encoder), and the ratio of the two.
The issue's target is >= 200 pairs/s for all metrics; the original did about 1 pair/s.
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import time

FIRST = ["Jane", "Omar", "Li", "Zoë", "Priya", "Bob", "Ana", "Kwame", "Sofia", "Ivan"]
LAST = ["Doe", "Haddad", "Wei", "Müller", "Natarajan", "Smith", "Silva", "Mensah", "Rossi"]
STREETS = ["Oak Street", "Elm Ave", "Harbour Road", "Rue de la Paix", "Main St"]
CITIES = ["Springfield", "Leeds", "Pune", "Accra", "Lyon"]
FILLER = "The student wrote about design thinking and interviewed several people".split()


def _item(rng: random.Random) -> tuple[str, str]:
    first, last = rng.choice(FIRST), rng.choice(LAST)
    kind = rng.choice(["NAME", "NAME", "EMAIL", "USERNAME", "ID_NUM", "PHONE_NUM",
                       "URL_PERSONAL", "STREET_ADDRESS"])
    value = {
        "NAME": f"{first} {last}",
        "EMAIL": f"{first.lower()}.{last.lower()}@example.com",
        "USERNAME": f"{first.lower()}_{rng.randint(1, 99)}",
        "ID_NUM": f"{rng.randint(100000, 999999)}-{rng.randint(10, 99)}",
        "PHONE_NUM": f"+1 555 {rng.randint(100, 999)} {rng.randint(1000, 9999)}",
        "URL_PERSONAL": f"https://{last.lower()}.example.org/~{first.lower()}",
        "STREET_ADDRESS": f"{rng.randint(1, 200)} {rng.choice(STREETS)}, {rng.choice(CITIES)}",
    }[kind]
    return value, kind


def _answer(items: list[tuple[str, str]]) -> str:
    return "\n".join(f"{v} ({k})" for v, k in items) if items else "None"


def make_pairs(n: int, seed: int = 0, output_seed: int | None = None) -> list[tuple[str, str]]:
    """`n` (output, reference) pairs: exact, partly right, mislabelled, empty and gibberish.

    The references depend on `seed` only; `output_seed` draws other outputs for the same
    references, as another layer or model of the same eval run would write.
    """
    rng = random.Random(seed)
    golds = [[_item(rng) for _ in range(rng.choice([0, 1, 2, 3, 4]))] for _ in range(n)]
    if output_seed is not None:
        rng = random.Random(output_seed)
    return [(_output(gold, rng), _answer(gold)) for gold in golds]


def _output(gold: list[tuple[str, str]], rng: random.Random) -> str:
    case = rng.random()
    if case < 0.35:
        return _answer(gold)
    if case < 0.6:
        pred = [it for it in gold if rng.random() < 0.7]
        return _answer(pred + [_item(rng) for _ in range(rng.randint(0, 1))])
    if case < 0.7:
        return _answer([(v, rng.choice(["NAME", "USERNAME", "ID_NUM"])) for v, _ in gold])
    if case < 0.8:
        return " ".join([rng.choice(FILLER)] * rng.randint(2, 40))
    if case < 0.85:
        return ""
    return " ".join(rng.choices(FILLER, k=rng.randint(5, 40)))


def score_original(pairs: list[tuple[str, str]], model_type: str, num_layers: int) -> None:
    """The original experiment's loop: three libraries called pair by pair."""
    from bert_score import score as bert_score
    from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu
    from rouge_score import rouge_scorer

    for output, reference in pairs:
        sentence_bleu([reference.split()], output.split(),
                      smoothing_function=SmoothingFunction().method1)
        rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True).score(reference, output)
        # the original also scored empty outputs; bert_score cannot encode them under
        # transformers 5, so a one-character placeholder stands in for them here
        bert_score([output or "."], [reference], model_type=model_type, num_layers=num_layers)


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=1000, help="pairs to score")
    parser.add_argument("--original", type=int, default=10,
                        help="pairs to score the original way (0 to skip)")
    parser.add_argument("--bootstrap", type=int, default=1000,
                        help="resamples for a second, timed run with intervals (0 to skip)")
    parser.add_argument("--batch-size", type=int, default=64, help="BERTScore batch size")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch threads (0: torch's default, one per core)")
    parser.add_argument("--seed", type=int, default=0)
    return parser


def main(args: argparse.Namespace) -> dict[str, float]:
    import warnings

    import torch

    from piilab.eval.metrics import BertScore, metrics_info, score

    warnings.filterwarnings("ignore")
    # piilab.eval.metrics logs the time each metric took
    logging.basicConfig(level=logging.WARNING, format="  %(message)s")
    logging.getLogger("piilab.eval.metrics").setLevel(logging.INFO)
    if args.threads:
        torch.set_num_threads(args.threads)
    pairs = make_pairs(args.pairs, args.seed)
    outputs, references = [o for o, _ in pairs], [r for _, r in pairs]
    print(f"{len(pairs)} pairs, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} (others' work slows this)")

    t = time.perf_counter()
    scorer = BertScore(batch_size=args.batch_size)
    # imports (nltk, rouge_score) and torch's first-call set-up are once per process too
    warmup = make_pairs(16, args.seed + 100)
    score([o for o, _ in warmup], [r for _, r in warmup], bertscorer=scorer)
    load_s = time.perf_counter() - t
    t, cpu = time.perf_counter(), time.process_time()
    result = score(outputs, references, bertscorer=scorer)
    score_s, cpu_s = time.perf_counter() - t, time.process_time() - cpu
    figures = {"load_s": load_s, "score_s": score_s, "pairs_per_s": len(pairs) / score_s,
               "pairs_per_s_with_load": len(pairs) / (score_s + load_s), "cpu_s": cpu_s}
    print(f"encoder load and warm-up: {load_s:.2f} s (once per run)")
    print(f"all metrics:  {score_s:.2f} s = {figures['pairs_per_s']:.0f} pairs/s "
          f"({figures['pairs_per_s_with_load']:.0f} pairs/s counting the load); "
          f"{cpu_s:.2f} s of CPU time")
    print("scores: " + ", ".join(f"{k} {v:.3f}" for k, v in result.scores.items()))
    print(f"metrics: {metrics_info('sacrebleu', scorer)}")

    # a second run of the same eval: other outputs, the same references (encoded once)
    layer2 = make_pairs(args.pairs, args.seed, output_seed=args.seed + 1)
    t, cpu = time.perf_counter(), time.process_time()
    score([o for o, _ in layer2], references, bertscorer=scorer)
    warm_s, warm_cpu_s = time.perf_counter() - t, time.process_time() - cpu
    figures.update(warm_pairs_per_s=len(pairs) / warm_s, warm_cpu_s=warm_cpu_s)
    print(f"next run, same references: {warm_s:.2f} s = {figures['warm_pairs_per_s']:.0f} pairs/s; "
          f"{warm_cpu_s:.2f} s of CPU time")

    if args.bootstrap:
        t = time.perf_counter()
        scorer.cache_references, scorer._references = False, None  # time a cold run again
        score(outputs, references, bertscorer=scorer, bootstrap=args.bootstrap)
        boot_s = time.perf_counter() - t
        figures["bootstrap_pairs_per_s"] = len(pairs) / boot_s
        print(f"with {args.bootstrap} bootstrap resamples: {boot_s:.2f} s = "
              f"{figures['bootstrap_pairs_per_s']:.0f} pairs/s")

    if args.original:
        t = time.perf_counter()
        score_original(pairs[: args.original], scorer.encoder.model_type, scorer.encoder.num_layers)
        orig_s = time.perf_counter() - t
        figures["original_pairs_per_s"] = args.original / orig_s
        print(f"original approach on {args.original} pairs: {orig_s:.2f} s = "
              f"{figures['original_pairs_per_s']:.2f} pairs/s; piilab is "
              f"{figures['pairs_per_s'] / figures['original_pairs_per_s']:.0f}x faster")
    return figures


if __name__ == "__main__":
    main(make_parser().parse_args())
