"""Benchmark: `extract` called on one text at a time, as a service calls it, with and without
`piilab.extract.prepared`.

    python benchmarks/extract_latency.py [--model piilab-pii] [--adapter RUN_DIR] [--n 40]
        [--linear merged,bfloat16] [--threads 2]

Each call of `extract` prepares the linear layers (LoRA merged into float32 copies, or bf16
copies) and runs the prompts' shared start (chat template, instruction, label definitions)
through the model, then decodes its text. A batch of hundreds of texts pays that once; a
service that extracts from each request's text alone pays it per text. `prepared` keeps both
for every call inside it. One run, side by side, on the same `--n` short texts (under 400
characters, spread over benchmarks/real_text/dev.jsonl), for each `--linear`: seconds per text
alone and prepared, their ratio, and the share of texts with identical answers (second look
and all, as `piilab extract` answers).
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time

from extract_speed import DEFAULT_TEXTS, read_texts


def per_text(call, texts: list[str]) -> tuple[list[float], list]:
    """Each text's seconds and answers, one call per text."""
    seconds, answers = [], []
    for text in texts:
        start = time.perf_counter()
        [result] = call([text])
        seconds.append(time.perf_counter() - start)
        answers.append((result.answers, result.second_look))
    return seconds, answers


def main(args: argparse.Namespace) -> None:
    import torch

    from piilab.extract import SpeedUps, extract, prepared
    from piilab.pii_prompt import prompt_settings
    from piilab.models import load_model, trained_folder
    from piilab.models.prompts import format_for
    from piilab.second_look import threshold_for

    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)
    texts = read_texts([DEFAULT_TEXTS], args.n, 400)
    model, tokenizer = load_model(args.model, args.adapter, device="cpu")
    trained_in = trained_folder(args.model, args.adapter)
    settings, fmt = prompt_settings(trained_in), format_for(tokenizer, trained_in)
    look = threshold_for(trained_in)[0]
    print(f"{len(texts)} texts (mean {sum(map(len, texts)) / len(texts):.0f} characters), one "
          f"per call; model {args.model} + {args.adapter}; {args.threads} threads; second look {look}")
    print(f"{'linear':<10} {'alone s/text':>13} {'prepared s/text':>16} {'ratio':>6} {'identical':>10}")
    for linear in args.linear:
        speedups = SpeedUps(linear=linear)

        def call(batch):
            return extract(model, tokenizer, batch, settings=settings, prompt_format=fmt,
                           progress=False, speedups=speedups, second_look=look)

        per_text(call, texts[:2])  # warm-up: no configuration pays for first-call set-up
        alone, answers = per_text(call, texts)
        with prepared(model, speedups):
            kept, kept_answers = per_text(call, texts)
        a, k = statistics.median(alone), statistics.median(kept)
        same = sum(x == y for x, y in zip(answers, kept_answers)) / len(texts)
        print(f"{linear:<10} {a:>13.3f} {k:>16.3f} {k / a:>6.2f} {same:>10.1%}  "
              f"(medians; totals {sum(alone):.1f} s and {sum(kept):.1f} s)", flush=True)


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="piilab-pii")
    parser.add_argument("--adapter")
    parser.add_argument("--n", type=int, default=40)
    parser.add_argument("--linear", type=lambda s: s.split(","), default=["merged", "bfloat16"])
    parser.add_argument("--threads", type=int, default=2)
    return parser


if __name__ == "__main__":
    main(make_parser().parse_args())
