"""Benchmark: one long `extract` call, prompt-lookup's cache packed as it goes or never packed.

    python benchmarks/stream_memory.py [--model piilab-pii] [--adapter RUN_DIR] [--times 2]
        [--threads 2] [--texts FILE.jsonl]

The texts of the dev set (default benchmarks/real_text/dev.jsonl), `--times` over, go through one
`piilab.extract.extract` call with its defaults (prompt-lookup decoding, merged weights, the
second look the adapter asks for, else 0.05): a stream of continuous batches. It runs twice, each
in a fresh process (peak RSS is a process's own), one after the other: with the cache packed
once it is layers/cache.PACK_WHEN_WIDER times wider than its rows need (the default), and never
packed (as before the eleventh session). Printed side by side: texts/s, peak RSS, the widest
cache in columns, the ratios, and whether both gave the same extractions.
Without packing, the cache grows with the whole stream (every pass adds columns to every row);
packed, it stays within twice the longest row.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

DEFAULT_TEXTS = Path(__file__).resolve().parent / "real_text" / "dev.jsonl"
NEVER = 1e9  # a cache is never that many times wider than its rows need


def one_run(args: argparse.Namespace) -> dict:
    """The child: one extract call over the stream, packing at `args.pack`; what it measured."""
    import resource

    import torch

    from piilab.extract import extract
    from piilab.pii_prompt import prompt_settings
    from piilab.layers import cache, lookup
    from piilab.models import load_model, trained_folder
    from piilab.models.prompts import format_for
    from piilab.second_look import threshold_for

    torch.set_num_threads(args.threads)
    cache.PACK_WHEN_WIDER = args.pack
    texts = [json.loads(line)["text"] for line in args.texts.read_text(encoding="utf-8").splitlines()
             if line.strip()] * args.times
    model, tokenizer = load_model(args.model, args.adapter, device="cpu")
    trained_in = trained_folder(args.model, args.adapter)
    widest, decode = [], lookup.lookup_generate

    def counted(*a, **k):
        run = decode(*a, **k)
        widest.append(run.widest_cache)
        return run

    run = partial(extract, model, tokenizer, settings=prompt_settings(trained_in),
                  prompt_format=format_for(tokenizer, trained_in), progress=False,
                  second_look=threshold_for(trained_in)[0])
    run(texts[:4])  # first-call set-up, not timed
    lookup.lookup_generate = counted
    start = time.perf_counter()
    results = run(texts)
    seconds = time.perf_counter() - start
    return {"texts": len(texts), "seconds": seconds, "widest": max(widest),
            "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6,
            "items": [sorted((i["value"], i["label"]) for i in r.items) for r in results]}


def child(args: argparse.Namespace, pack: float) -> dict:
    command = [sys.executable, __file__, "--child", str(pack), "--model", args.model,
               "--times", str(args.times), "--threads", str(args.threads), "--texts", str(args.texts)]
    if args.adapter:
        command += ["--adapter", args.adapter]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"the run packing at {pack} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    if args.child is not None:
        args.pack = args.child
        print(json.dumps(one_run(args)))
        return 0
    from piilab.layers.cache import PACK_WHEN_WIDER

    runs = {"packed": child(args, PACK_WHEN_WIDER), "never packed": child(args, NEVER)}
    print(f"{runs['packed']['texts']} texts ({args.texts.name} x {args.times}) in one extract call; "
          f"model {args.model}{' + ' + args.adapter if args.adapter else ''}; {args.threads} threads")
    print(f"{'cache':<14} {'seconds':>8} {'texts/s':>8} {'peak RSS GB':>12} {'widest':>7}")
    for name, run in runs.items():
        print(f"{name:<14} {run['seconds']:>8.1f} {run['texts'] / run['seconds']:>8.2f} "
              f"{run['peak_rss_gb']:>12.2f} {run['widest']:>7}")
    packed, never = runs["packed"], runs["never packed"]
    same = sum(a == b for a, b in zip(packed["items"], never["items"])) / len(packed["items"])
    print(f"packed / never packed: speed {never['seconds'] / packed['seconds']:.2f}x, peak RSS "
          f"{packed['peak_rss_gb'] / never['peak_rss_gb']:.2f}x, widest cache "
          f"{packed['widest'] / never['widest']:.2f}x; the same items in {same:.1%} of the texts")
    return 0


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="piilab-pii", help="piilab model spec")
    parser.add_argument("--adapter", default=None, help="adapter (run) folder for --model")
    parser.add_argument("--texts", type=Path, default=DEFAULT_TEXTS, help="JSONL rows with a 'text'")
    parser.add_argument("--times", type=int, default=2, help="the texts this many times over")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--child", type=float, default=None, help=argparse.SUPPRESS)
    return parser


if __name__ == "__main__":
    sys.exit(main())
