"""Benchmark: `piilab data build` on ai4privacy-format JSONL, for speed and flat memory.

Generates N synthetic rows in the ai4privacy 300k shape (source_text, privacy_mask with
GIVENNAME/SURNAME/... spans, mbert tokens) into a temporary file, then converts them in a fresh
process per size, so each peak RSS is that size's own. The figures to read:
- rows per CPU-second of the build (one process, one core), >= 10,000 wanted, and wall rows/s;
- peak RSS and tracemalloc peak at 20k and 100k rows side by side: flat means the difference is
  the ~30 bytes per row of hash index (data/split.py), not the rows themselves;
- two floors measured on the same rows just before: the json module's loads + dumps + write,
  and msgspec's (the library the build reads and writes with). On a shared machine every figure
  moves with load; compare the build with the floors and the calibration line, not across runs.

    .venv/bin/python benchmarks/data_build.py            # 20k and 100k rows
    .venv/bin/python benchmarks/data_build.py --sizes 5000 --no-tracemalloc
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FIRST = ["Lena", "Georg", "Priya", "Olusegun", "Marta", "Jon", "Aiko", "Carlos", "Fatima", "Ivan", "Chloé", "Tomasz"]
LAST = ["Vogt", "Hohenstein", "Sharma", "Adeyemi", "Nowak", "Berg", "Tanaka", "Ruiz", "Haddad", "Petrov", "Dubois"]
STREETS = ["Elm Row", "Harbor Road", "Main Street", "Rue de la Paix", "Hauptstraße", "Calle Mayor"]
CITIES = ["Leeds", "Portland", "Lyon", "Berlin", "Madrid", "Kraków"]
FILLER = ("The quarterly review covers onboarding, the updated travel policy and the new expense "
          "tool. Please read the attached guide before the workshop and bring your questions. ")


def make_row(i: int, rng: random.Random) -> dict:
    """One ai4privacy-300k-shaped row with 5-7 spans and ~450-700 characters."""
    first, last = rng.choice(FIRST), rng.choice(LAST)
    user = f"{first.lower()}_{last.lower()}{rng.randint(1, 99)}"
    parts: list[tuple[str, str | None]] = [
        ("Dear ", None), (first, "GIVENNAME1"), (" ", None), (last, "LASTNAME1"),
        (f", {FILLER[: rng.randint(60, 200)]}Your account ", None), (user, "USERNAME"),
        (" is linked to ", None), (f"{user}@example.com", "EMAIL"), (". Ship the kit to ", None),
        (str(rng.randint(1, 999)), "BUILDING"), (" ", None), (rng.choice(STREETS), "STREET"), (", ", None),
        (rng.choice(CITIES), "CITY"), (f". {FILLER[: rng.randint(80, 230)]}Call ", None),
        (f"+44 20 {rng.randint(1000, 9999)} {rng.randint(1000, 9999)}", "TEL"),
        (f" before {rng.randint(8, 18)}:00 on ", None), (f"{rng.randint(1, 28)}/0{rng.randint(1, 9)}/2024", "DATE"),
        (". Regards, the team.", None),
    ]
    text, mask, at = [], [], 0
    for piece, label in parts:
        if label:
            mask.append({"value": piece, "start": at, "end": at + len(piece), "label": label})
        text.append(piece)
        at += len(piece)
    source = "".join(text)
    tokens = source.split()
    return {"source_text": source, "target_text": "", "privacy_mask": mask,
            "mbert_text_tokens": tokens, "mbert_bio_labels": ["O"] * len(tokens),
            "id": str(i), "language": "English", "set": "train"}


def write_rows(path: Path, n: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8") as handle:
        for i in range(n):
            handle.write(json.dumps(make_row(i, rng), ensure_ascii=False) + "\n")


def convert(path: str, out: str, tracemalloc_on: bool) -> dict:
    """Run in a child process: build the dataset and report time and memory."""
    import logging

    logging.disable(logging.INFO)
    if tracemalloc_on:
        import tracemalloc

        tracemalloc.start()
    from piilab.data.build import (  # imported before the clock starts
        BuildConfig,
        build_dataset,
    )

    start, cpu = time.perf_counter(), time.process_time()
    card = build_dataset(BuildConfig(out=out, sources=[f"ai4privacy:{path}"], test_size=0.1))
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu
    result = {"seconds": seconds, "cpu_seconds": cpu_seconds, "rows": card["sources"]["ai4privacy"]["records_in"],
              "written": card["sources"]["ai4privacy"]["written"],
              "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if tracemalloc_on:
        result["tracemalloc_peak_mb"] = tracemalloc.get_traced_memory()[1] / 2**20
    return result


def json_floor(path: Path) -> float:
    """Rows per CPU-second of json.loads + json.dumps + write alone: the json module's round trip."""
    start = time.process_time()
    n = 0
    with path.open(encoding="utf-8") as rows, open(os.devnull, "w", encoding="utf-8") as sink:
        for line in rows:
            sink.write(json.dumps(json.loads(line), ensure_ascii=False) + "\n")
            n += 1
    return n / (time.process_time() - start)


def msgspec_floor(path: Path) -> float:
    """Rows per CPU-second of msgspec's decode + encode + write alone (whole rows, every field)."""
    import msgspec

    decode, encode = msgspec.json.Decoder().decode, msgspec.json.Encoder().encode
    start = time.process_time()
    n = 0
    with path.open("rb") as rows, open(os.devnull, "wb") as sink:
        for line in rows:
            sink.write(encode(decode(line)) + b"\n")
            n += 1
    return n / (time.process_time() - start)


def run_child(path: Path, out: Path, tracemalloc_on: bool) -> dict:
    cmd = [sys.executable, __file__, "--child", str(path), str(out)] + (["--tracemalloc"] if tracemalloc_on else [])
    # The build is one thread; keep numpy's BLAS from starting more.
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[20_000, 100_000])
    parser.add_argument("--no-tracemalloc", action="store_true", help="skip the (slower) tracemalloc runs")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--tracemalloc", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(convert(*args.child, tracemalloc_on=args.tracemalloc)))
        return 0

    # How fast this machine is right now: shared machines make every figure below move with load.
    start = time.process_time()
    sum(range(10**7))
    calibration = time.process_time() - start
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.sizes:
            data = Path(tmp) / f"rows-{n}.jsonl"
            write_rows(data, n)
            size_mb = data.stat().st_size / 2**20
            floors = {"json": json_floor(data), "msgspec": msgspec_floor(data)}
            timed = run_child(data, Path(tmp) / f"out-{n}", tracemalloc_on=False)
            timed["floors"] = floors
            traced = None if args.no_tracemalloc else run_child(data, Path(tmp) / f"out-t-{n}", tracemalloc_on=True)
            rows.append((n, size_mb, timed, traced))
            data.unlink()
    print(f"machine: sum(range(10**7)) took {calibration:.3f} s CPU; load average {load:.1f} "
          f"on {os.cpu_count()} CPUs")
    print(f"{'rows':>8} {'input MB':>9} {'wall s':>7} {'CPU s':>7} {'rows/s wall':>12} {'rows/s CPU':>11} "
          f"{'peak RSS MB':>12} {'tracemalloc peak MB':>20}")
    for n, size_mb, timed, traced in rows:
        peak = f"{traced['tracemalloc_peak_mb']:.1f}" if traced else "-"
        print(f"{n:>8} {size_mb:>9.1f} {timed['seconds']:>7.2f} {timed['cpu_seconds']:>7.2f} "
              f"{timed['rows'] / timed['seconds']:>12.0f} {timed['rows'] / timed['cpu_seconds']:>11.0f} "
              f"{timed['peak_rss_mb']:>12.1f} {peak:>20}")
    for n, _, timed, _ in rows:
        floors = timed["floors"]
        print(f"{n:>8} rows: decode + encode + write alone, per CPU-second: json module {floors['json']:.0f}, "
              f"msgspec {floors['msgspec']:.0f}; the build runs at "
              f"{timed['rows'] / timed['cpu_seconds'] / floors['json']:.2f}x the json module's round trip")
    slowest = min(t["rows"] / t["cpu_seconds"] for _, _, t, _ in rows)
    print(f"slowest: {slowest:.0f} rows per CPU-second on one core "
          f"({'meets' if slowest >= 10_000 else 'BELOW'} the 10,000 rows/s target)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
