"""Benchmark: LoRA training throughput of SmolLM2-135M, plain TRL fp32 against piilab's defaults.

    python benchmarks/train_throughput.py [--steps 8] [--batch-size 8] [--max-length 256] [--full]

Both sides train the same LoRA (r=16, alpha=32, dropout 0.05, all linear layers) on the same
synthetic PII records (`piilab data build --synthetic`), one epoch over exactly steps x batch
records, batch 8, max length 256, each in its own subprocess so its peak RSS is its own:

- baseline: TRL's SFTTrainer as its documentation shows it, with the prompt rendered by the same
  chat template, fp32 (`bf16=False`), everything else TRL's defaults (which include gradient
  checkpointing); `--baseline-no-checkpointing` also runs it with checkpointing off.
- piilab: `piilab.train.train` with its default CPU settings;
- piilab-fast: the same with `--cpu-memory fast` (glibc's own heap: faster steps, more memory),
  printed for comparison; the targets are for the defaults.
- piilab-full (with `--full`): `--cpu-memory fast` and `--full-finetune` (every weight but the
  embeddings and head, no LoRA), printed beside piilab-fast.

Only records whose prompt + answer fit in max length are used, so the baseline truncates no
answer and piilab skips none. Tokens/s counts real tokens only (no padding), from the end of the
first step (warm-up) to the end of the last. Targets (issue 4): ratio >= 1.7 and piilab's peak
RSS <= 3 GB. Timings on a shared CPU are noisy: `--repeats` alternates the runs.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LORA = dict(r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear")
MODEL = "smollm2-135m"


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make_data(out: Path, n: int, max_length: int, seed: int) -> dict:
    """Synthetic records that fit max_length, exactly n of them, as out/train.jsonl."""
    from piilab.data import BuildConfig, build_dataset, read_records
    from piilab.io import write_jsonl
    from piilab.models import load_tokenizer, resolve
    from piilab.models.prompts import default_format
    from piilab.train import encode_record

    raw = out / "raw"
    build_dataset(BuildConfig(out=str(raw), synthetic=max(4 * n, 200), seed=seed, test_size=0.05))
    tokenizer = load_tokenizer(resolve(MODEL))
    fmt = default_format(tokenizer)
    records, seen = [], 0
    for record in read_records(raw, "train"):
        seen += 1
        if len(encode_record(record, tokenizer, fmt)["input_ids"]) <= max_length:
            records.append(record)
        if len(records) == n:
            break
    if len(records) < n:
        raise SystemExit(f"only {len(records)} of {seen} records fit in {max_length} tokens")
    write_jsonl(out / "train.jsonl", records)
    return {"records": n, "looked_at": seen}


# ---------------------------------------------------------------- workers (one per subprocess)


class _StepClock:
    """A TrainerCallback that times each optimizer step."""

    def __init__(self):
        from transformers import TrainerCallback

        clock = self

        class Callback(TrainerCallback):
            def on_step_end(self, args, state, control, **kwargs):
                clock.times.append((state.global_step, time.perf_counter()))

        self.times: list[tuple[int, float]] = []
        self.callback = Callback()


def steady_rate(times, history) -> tuple[float, float]:
    """(real tokens/s after the first step, seconds per step) from step times and TRL's num_tokens."""
    tokens = {int(e["step"]): e["num_tokens"] for e in history if "num_tokens" in e and "loss" in e}
    (s0, t0), (s1, t1) = times[0], times[-1]
    return (tokens[s1] - tokens[s0]) / (t1 - t0), (t1 - t0) / (s1 - s0)


def run_baseline(data: Path, args) -> dict:
    """Plain TRL: SFTTrainer + LoRA, fp32, TRL defaults otherwise."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from piilab.io import iter_jsonl
    from piilab.models import resolve
    from piilab.models.prompts import default_format

    path = resolve(MODEL).path
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    fmt = default_format(tokenizer)
    rows = [{"prompt": fmt.render(tokenizer, r["prompt"]), "completion": r["completion"]}
            for r in iter_jsonl(data / "train.jsonl")]
    clock = _StepClock()
    with tempfile.TemporaryDirectory() as tmp:
        config = SFTConfig(
            output_dir=tmp, per_device_train_batch_size=args.batch_size, max_length=args.max_length,
            num_train_epochs=1, learning_rate=3e-4, bf16=False, use_cpu=True, report_to="none",
            save_strategy="no", logging_steps=1, seed=0,
            **({"gradient_checkpointing": False} if args.worker == "baseline-nogc" else {}),
        )
        trainer = SFTTrainer(model=model, args=config, train_dataset=Dataset.from_list(rows),
                             processing_class=tokenizer, peft_config=LoraConfig(**LORA),
                             callbacks=[clock.callback])
        trainer.train()
        rate, step_s = steady_rate(clock.times, trainer.state.log_history)
        return {"tokens_per_s": rate, "s_per_step": step_s, "steps": trainer.state.global_step,
                "gradient_checkpointing": bool(config.gradient_checkpointing),
                "peak_rss_mb": peak_rss_mb()}


def run_piilab(data: Path, args) -> dict:
    """piilab's train() with its defaults for this machine (piilab-fast: `cpu_memory="fast"`;
    piilab-full: that and `full_finetune`)."""
    from piilab.train import TrainConfig, train

    clock = _StepClock()
    with tempfile.TemporaryDirectory() as tmp:
        config = TrainConfig(data=str(data), out=str(Path(tmp) / "run"), model=MODEL,
                             batch_size=args.batch_size, max_length=args.max_length, epochs=1,
                             lora_r=16, lora_alpha=32, lora_dropout=0.05, save_steps=10_000, seed=0,
                             cpu_memory="lean" if args.worker == "piilab" else "fast",
                             full_finetune=args.worker == "piilab-full")
        summary = train(config, callbacks=[clock.callback])
        times = clock.times
        step_s = (times[-1][1] - times[0][1]) / (times[-1][0] - times[0][0])
        return {"tokens_per_s": summary.steady_tokens_per_second, "s_per_step": step_s,
                "steps": summary.global_step, "precision": summary.precision,
                "peak_rss_mb": peak_rss_mb()}


WORKERS = {"baseline": run_baseline, "baseline-nogc": run_baseline, "piilab": run_piilab,
           "piilab-fast": run_piilab, "piilab-full": run_piilab}


# ---------------------------------------------------------------- driver


def run_worker(name: str, data: Path, args) -> dict:
    cmd = [sys.executable, __file__, "--worker", name, "--data", str(data),
           "--batch-size", str(args.batch_size), "--max-length", str(args.max_length)]
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}
    if args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        sys.stderr.write(done.stderr[-4000:])
        raise SystemExit(f"{name} worker failed")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8, help="optimizer steps per run (first is warm-up)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=1, help="alternate baseline/piilab runs")
    parser.add_argument("--baseline-no-checkpointing", action="store_true",
                        help="also run the baseline with gradient checkpointing off")
    parser.add_argument("--threads", type=int, default=0,
                        help="OMP_NUM_THREADS for both sides (default: torch's choice, one per core)")
    parser.add_argument("--full", action="store_true",
                        help="also time full fine-tuning (--full-finetune, --cpu-memory fast)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:  # inside a subprocess: one run, one JSON line
        result = WORKERS[args.worker](Path(args.data), args)
        print(json.dumps(result))
        return 0

    names = ["baseline", *(["baseline-nogc"] if args.baseline_no_checkpointing else []), "piilab", "piilab-fast",
             *(["piilab-full"] if args.full else [])]
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        info = make_data(data, args.steps * args.batch_size, args.max_length, args.seed)
        print(f"SmolLM2-135M, LoRA r=16 all-linear, batch {args.batch_size}, max length "
              f"{args.max_length}, {args.steps} steps over {info['records']} synthetic records "
              f"(those of {info['looked_at']} that fit); {os.cpu_count()} cores, "
              f"{args.threads or 'default'} threads, load average {os.getloadavg()[0]:.1f}")
        results: dict[str, list[dict]] = {name: [] for name in names}
        for _ in range(args.repeats):
            for name in names:
                results[name].append(run_worker(name, data, args))
                r = results[name][-1]
                print(f"  {name:<14} {r['tokens_per_s']:8.1f} real tokens/s  {r['s_per_step']:6.2f} s/step  "
                      f"peak RSS {r['peak_rss_mb'] / 1024:5.2f} GB", flush=True)

    best = {name: max(runs, key=lambda r: r["tokens_per_s"]) for name, runs in results.items()}
    base, mine = best["baseline"], best["piilab"]
    ratio = mine["tokens_per_s"] / base["tokens_per_s"]
    rss_gb = max(r["peak_rss_mb"] for r in results["piilab"]) / 1024
    print(f"baseline (TRL fp32, gradient checkpointing {'on' if base['gradient_checkpointing'] else 'off'}): "
          f"{base['tokens_per_s']:.1f} tokens/s, peak RSS {base['peak_rss_mb'] / 1024:.2f} GB")
    if "baseline-nogc" in best:
        b2 = best["baseline-nogc"]
        print(f"baseline (TRL fp32, gradient checkpointing off): {b2['tokens_per_s']:.1f} tokens/s, "
              f"peak RSS {b2['peak_rss_mb'] / 1024:.2f} GB; piilab ratio to it "
              f"{mine['tokens_per_s'] / b2['tokens_per_s']:.2f}x")
    print(f"piilab ({mine.get('precision')}): {mine['tokens_per_s']:.1f} tokens/s, peak RSS {rss_gb:.2f} GB")
    fast = best["piilab-fast"]
    print(f"piilab --cpu-memory fast: {fast['tokens_per_s']:.1f} tokens/s "
          f"({fast['tokens_per_s'] / base['tokens_per_s']:.2f}x the baseline), peak RSS {fast['peak_rss_mb'] / 1024:.2f} GB")
    if "piilab-full" in best:
        full = best["piilab-full"]
        print(f"piilab --full-finetune --cpu-memory fast: {full['tokens_per_s']:.1f} tokens/s "
              f"({full['tokens_per_s'] / fast['tokens_per_s']:.2f}x LoRA with --cpu-memory fast), "
              f"peak RSS {full['peak_rss_mb'] / 1024:.2f} GB")
    print(f"tokens/s ratio {ratio:.2f}x (target >= 1.7): {'PASS' if ratio >= 1.7 else 'FAIL'}; "
          f"piilab peak RSS {rss_gb:.2f} GB (target <= 3): {'PASS' if rss_gb <= 3 else 'FAIL'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
