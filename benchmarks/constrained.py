"""Copy-constrained against free decoding: PII scores and speed of `extract` on the same records.

    python benchmarks/constrained.py --adapter RUN_DIR [--model smollm2-135m] [--layer 30] \
        [--data DATASET_OR_JSONL] [--limit 64] [--batch-size 8] [--seed 0]

Reads records with a `text` and `spans` (a dataset folder's test.jsonl, or a JSONL file such as
a real-text dev set), takes the first `--limit` of them (after a seeded shuffle when `--seed` is
given), and runs `piilab.extract.extract` on their texts twice, free and constrained, in the same
process, batches and order, after one warm-up batch. Prints, per mode: micro PII precision, recall
and F1 over normalised (value, label) pairs against each record's reference answer (as
`piilab eval` scores it, a label outside the set counting as a malformed line), value F1, predicted
values that occur nowhere in the text, lines with a label outside the set, malformed lines, items
predicted per 100 PII-free texts, and texts per second.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import re
import time
from pathlib import Path


def collapse(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def run_mode(model, tokenizer, records, settings, fmt, layer, batch_size, constrain,
             decoding=None) -> dict:
    """Extract from every record's text in one mode; its scores, diagnostics and speed."""
    from piilab.data.answer import parse_answer, parse_answer_counted
    from piilab.data.instruct import completion
    from piilab.data.labels import DEFAULT_LABELS
    from piilab.data.records import Span
    from piilab.eval.pii_metrics import pii_counts, pii_micro
    from piilab.extract import extract

    labels = tuple(settings.labels or DEFAULT_LABELS)
    start = time.perf_counter()
    results = extract(model, tokenizer, [r["text"] for r in records], layer=layer,
                      settings=settings, prompt_format=fmt, batch_size=batch_size,
                      decoding=decoding, progress=False, constrain=constrain)
    seconds = time.perf_counter() - start
    outputs = ["\n".join(x.answers) for x in results]
    references = [completion([Span(**s) for s in r["spans"] or ()]) for r in records]
    scores = pii_micro(pii_counts(outputs, references, labels))
    items = [parse_answer(o) for o in outputs]
    pii_free = [i for i, r in enumerate(records) if not r["spans"]]
    return {
        "mode": "constrained" if constrain else "free",
        **{k: round(float(v), 3) for k, v in scores.items()},
        "values_not_in_text": sum(collapse(v) not in collapse(r["text"])
                                  for r, found in zip(records, items) for v, _ in found),
        "labels_outside_set": sum(label not in labels for found in items for _, label in found),
        "malformed_lines": sum(parse_answer_counted(o, labels)[1] for o in outputs),
        "items_per_100_pii_free": round(100 * sum(len(items[i]) for i in pii_free)
                                        / max(len(pii_free), 1), 1),
        "texts_per_s": round(len(records) / seconds, 3),
        "seconds": round(seconds, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--adapter", required=True)
    parser.add_argument("--data", default=None, help="dataset folder or JSONL (default: the "
                        "adapter's training data, test split)")
    parser.add_argument("--layer", type=int, default=30)
    parser.add_argument("--limit", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seed", type=int, default=None, help="shuffle before --limit")
    parser.add_argument("--max-new-tokens", type=int, default=128)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("piilab.layers.decode").setLevel(logging.INFO)  # the constraint's summary

    import torch

    from piilab import models
    from piilab.data.dataset import dataset_file
    from piilab.pii_prompt import prompt_settings
    from piilab.io import iter_jsonl
    from piilab.layers.decode import Decoding
    from piilab.models.prompts import format_for

    trained = models.trained_folder(args.model, args.adapter)
    data = args.data or json.loads((Path(trained) / "train_config.json").read_text())["config"]["data"]
    records = [r for r in iter_jsonl(dataset_file(data, "test")) if "text" in r]
    if args.seed is not None:
        random.Random(args.seed).shuffle(records)
    records = records[: args.limit]
    model, tokenizer = models.load_model(args.model, args.adapter, device="cpu")
    settings, fmt = prompt_settings(trained), format_for(tokenizer, trained)
    print(f"{len(records)} records from {data}, layer {args.layer}, batches of {args.batch_size}, "
          f"{torch.get_num_threads()} threads")
    decoding = Decoding(max_new_tokens=args.max_new_tokens)
    run_mode(model, tokenizer, records[: args.batch_size], settings, fmt, args.layer,
             args.batch_size, True, decoding)  # warm-up: allocations, the token table
    for constrain in (False, True):
        row = run_mode(model, tokenizer, records, settings, fmt, args.layer, args.batch_size,
                       constrain, decoding)
        print(json.dumps(row))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
