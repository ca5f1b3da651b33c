"""Profile: where the host time of a `piilab.train` step goes (cProfile), on any model folder.

    python benchmarks/gpu.py --smoke --out /tmp/g     # a tiny model and data, if none at hand
    python benchmarks/train_profile.py --model /tmp/g/work/models/tiny --data /tmp/g/work/data \
        [--steps 40] [--no-share-prefix] [--no-compact-activations]

On a tiny model a step is almost all host work (Python, dispatch), which is what a GPU waits
on; prints ms per step (steps 6 onwards, under cProfile), piilab's own per-step functions, and
the functions with the most time of their own.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import tempfile
import time
from pathlib import Path

OURS = ("compute_loss", "shared_prefix_length", "pack", "write_log_csv", "_flush_counts", "_flush_tokens",
        "_gathered_real_tokens", "on_log")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--share-prefix", action=argparse.BooleanOptionalAction, default=None)
    parser.add_argument("--compact-activations", action=argparse.BooleanOptionalAction, default=None)
    args = parser.parse_args(argv)

    from transformers import TrainerCallback

    from piilab.train import TrainConfig, train

    ends: list[float] = []

    class Clock(TrainerCallback):
        def on_step_end(self, *a, **k):
            ends.append(time.perf_counter())

    with tempfile.TemporaryDirectory() as tmp:
        config = TrainConfig(data=args.data, out=str(Path(tmp) / "run"), model=args.model, max_steps=args.steps,
                             batch_size=args.batch_size, lora_r=8, save_steps=100_000, seed=0,
                             share_prefix=args.share_prefix, compact_activations=args.compact_activations)
        profile = cProfile.Profile()
        profile.enable()
        train(config, callbacks=[Clock()])
        profile.disable()
    skip = min(5, len(ends) - 2)
    print(f"{(ends[-1] - ends[skip]) * 1000 / (len(ends) - 1 - skip):.1f} ms per step (under cProfile)")
    stats = pstats.Stats(profile, stream=io.StringIO())
    for (path, line, name), (_, calls, _, cumulative, _) in stats.stats.items():
        if name in OURS and "piilab" in path:
            print(f"  {name:<22} {Path(path).name}:{line}  {calls:>6} calls  {cumulative * 1000 / args.steps:7.2f} ms per step")
    out = io.StringIO()
    pstats.Stats(profile, stream=out).sort_stats("tottime").print_stats(15)
    print("\n".join(out.getvalue().splitlines()[4:]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
