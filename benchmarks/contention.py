"""Benchmark: `piilab extract` on short texts alone, then beside a busy process on the same cores.

    python benchmarks/contention.py [--model smollm2-135m] [--texts 32] [--busy python,decode]
                                    [--late S] [--timeout 900] [--env KEY=VALUE ...] [-- extract flags]

Every run is the same `piilab extract --input TEXTS.jsonl` command with default settings, each a
fresh process (so each makes its own thread choice), on the cores this script may use: first
alone, then once beside each busy process (BUSY_LOOPS: a Python loop, torch matmul loops) pinned
to those same cores; it starts a second before, so it is running when piilab looks at the load,
or with `--late S` S seconds after the run starts, as a job that comes later (piilab looks again
once a minute: run enough texts, `--texts` cycles through the 32, for a look to come).
Printed side by side: wall time of each run (model load included, as a user waits for it), the
threads each run chose (from its log), the slowdown ratio, and whether both runs gave the same
extractions. Target (issue 18): slowdown <= 2.5x.

`--env OMP_WAIT_POLICY=ACTIVE` (repeatable) sets a variable for both runs, to measure what a
setting does; `PYTHONPATH=/path/to/other/src` runs another checkout's piilab (the code before a
change). A run that passes --timeout is stopped and reported as "> timeout".
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

# Short texts with PII of many kinds, written for this benchmark (no reserved data set).
TEXTS = [
    "Call Maria Gonzalez on 415-555-0182 before Friday.",
    "Invoice 2231 goes to Tobias Brandt, Lindenstrasse 14, 10969 Berlin.",
    "Send the contract to priya.raman@northwind-legal.com today.",
    "Patient Ahmed Yilmaz, born 03/11/1987, checked in at 9:40.",
    "My card number is 4539 1488 0343 6467, expiry 08/29.",
    "Login from 203.0.113.77 by user kwasi_mensah failed twice.",
    "Wire the refund to IBAN DE44 5001 0517 5407 3249 31, ref. Hannah Vogel.",
    "Olivia Chen moved to 88 Harbour Road, Wellington 6011.",
    "Reach the landlord, Mr. Pieter de Vries, at +31 6 1234 5678.",
    "SSN 078-05-1120 belongs to the applicant Daniel Okafor.",
    "Lucas Moreau's passport number is 18AV23401.",
    "Ship to Aiko Tanaka, 2-14-6 Shibuya, Tokyo 150-0002.",
    "The driver, Sven Lindqvist, has licence plate ABC 123.",
    "Email fatima.zahra@example.org if the parcel is late.",
    "Grace Mwangi's employee ID is EMP-004417; her manager is Tom Reyes.",
    "Meet Jonas Weber at 17 Rue de la Paix, 75002 Paris, on 12 May.",
    "Text 07700 900461 to confirm, signed Eleanor Price.",
    "Account holder: Rafael Souza, account 00123456, sort code 20-00-00.",
    "Visit https://blog.sarahkim.dev for Sarah Kim's portfolio.",
    "Dr. Nikolai Petrov will see you on 2024-02-19 at 14:00.",
    "Username liam.oconnor88, password reset sent to liam@mailbox.ie.",
    "Deliver to Chloe Martin, 5 Elm Street, Springfield, IL 62704.",
    "Mateo Rossi (DOB 21 June 1990) lives in Via Roma 22, Milano.",
    "Her phone is (212) 555-0147 and her name is Rebecca Stone.",
    "Arjun Patel paid with card 5500 0000 0000 0004.",
    "Server admin is ingrid.holm@fjord-it.no, IP 198.51.100.23.",
    "Witness statement by Kofi Boateng, 44 Cantonments Road, Accra.",
    "Lena Schmidt's tax ID is 12 345 678 901.",
    "Ask for Carlos Mendoza at the front desk, extension 4471.",
    "Noah Williams, 7 Queen Street, Auckland 1010, phone 09 555 0199.",
    "The tenant Zofia Nowak can be reached at zofia.nowak@poczta.pl.",
    "Booking for Emma Dubois, born 1979-09-30, seat 14C.",
]

BUSY_LOOPS = {
    # one core: a Python loop
    "python": "while True:\n    pass\n",
    # one core: a one-thread torch matmul loop
    "matmul": ("import torch\ntorch.set_num_threads(1)\na = torch.randn(256, 256)\n"
               "while True:\n    a = (a @ a).tanh()\n"),
    # every core: a torch matmul loop on torch's default threads, as another torch job runs
    "torch": "import torch\na = torch.randn(512, 512)\nwhile True:\n    a = (a @ a).tanh()\n",
    # every core: small matmuls on torch's default threads, as another decoding process runs
    "decode": ("import torch\nx, w = torch.randn(8, 576), torch.randn(576, 1536) / 24\n"
               "while True:\n    x = (x @ w)[:, :576].tanh()\n"),
}

THREAD_LINE = re.compile(r"runtime: threads: (\d+) (.*)")


def start_busy(kind: str, cores: set[int]) -> subprocess.Popen:
    """A busy process (BUSY_LOOPS), pinned to the same cores as the runs."""
    busy = subprocess.Popen([sys.executable, "-c", BUSY_LOOPS[kind]],
                            preexec_fn=lambda: os.sched_setaffinity(0, cores))
    time.sleep(1.0)  # running, and seen by the kernel's accounting, before piilab starts
    return busy


def run_extract(command: list[str], env: dict, timeout: float) -> tuple[float, str, str]:
    """(wall seconds or inf, stdout, the thread choice piilab logged)."""
    start = time.perf_counter()
    try:
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return float("inf"), "", "?"
    seconds = time.perf_counter() - start
    if done.returncode:
        sys.exit(f"extract failed ({done.returncode}):\n{done.stderr[-3000:]}")
    found = THREAD_LINE.findall(done.stderr)
    if not found:
        return seconds, done.stdout, "not logged"
    later = "".join(f"; then {count} ({reason})" for count, reason in found[1:])
    return seconds, done.stdout, f"{found[0][0]}: {found[0][1]}{later}"


def piilab_of(env: dict) -> str:
    """The folder the runs import piilab from (their environment's, which --env may change)."""
    done = subprocess.run([sys.executable, "-c", "import piilab; print(piilab.__file__)"],
                          env=env, capture_output=True, text=True)
    return str(Path(done.stdout.strip()).parent) if done.returncode == 0 else "? (not importable)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m",
                        help="model spec or adapter folder (e.g. /work/piilab-demo/run)")
    parser.add_argument("--texts", type=int, default=len(TEXTS), help="how many texts (the 32 in turn)")
    parser.add_argument("--late", type=float, default=0.0, metavar="S",
                        help="start each busy process S seconds after the run, not a second before")
    parser.add_argument("--busy", default="python,decode",
                        help=f"comma-separated busy processes, one run beside each: {','.join(BUSY_LOOPS)}")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per run at most")
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                        help="an environment variable for the extract runs (repeatable)")
    parser.add_argument("extra", nargs="*", help="more `piilab extract` flags (after --)")
    args = parser.parse_args()
    kinds = args.busy.split(",")
    if unknown := set(kinds) - set(BUSY_LOOPS):
        parser.error(f"unknown --busy {','.join(sorted(unknown))}")

    cores = os.sched_getaffinity(0)
    env = {**os.environ, **dict(item.split("=", 1) for item in args.env)}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        texts = Path(tmp) / "texts.jsonl"
        texts.write_text("".join(json.dumps({"id": i, "text": t}) + "\n"
                                 for i, t in zip(range(args.texts), TEXTS * (args.texts // len(TEXTS) + 1))))
        command = [sys.executable, "-m", "piilab", "extract", "--model", args.model,
                   "--input", str(texts), *args.extra]
        rows.append(("alone", *run_extract(command, env, args.timeout)))
        for kind in kinds:
            started, timer = [], None
            if args.late:
                timer = threading.Timer(args.late, lambda kind=kind: started.append(start_busy(kind, cores)))
                timer.start()
            else:
                started.append(start_busy(kind, cores))
            try:
                label = f"beside {kind}" + (f" from {args.late:.0f} s" if args.late else "")
                rows.append((label, *run_extract(command, env, args.timeout)))
            finally:
                if timer:  # a timer never started cannot be joined
                    timer.cancel()
                    timer.join()
                for busy in started:
                    busy.kill()
                    busy.wait()

    import torch

    print(f"piilab extract on {args.texts} texts, model {args.model}, cores {sorted(cores)}, "
          f"torch {torch.__version__}, piilab from {piilab_of(env)}")
    if args.env or args.extra:
        print(f"settings: {' '.join(args.env + args.extra)}")
    alone, alone_out = rows[0][1], rows[0][2]
    print(f"{'':20} {'wall s':>7} {'slowdown':>9}  same output  threads (reason)")
    for label, seconds, out, chosen in rows:
        if seconds == float("inf"):
            print(f"{label:20} {'>' + format(args.timeout, '.0f'):>7} "
                  f"{'>' + format(args.timeout / alone, '.1f') + 'x':>9}  {'-':11}  {chosen}")
            continue
        print(f"{label:20} {seconds:7.1f} {seconds / alone:8.2f}x  "
              f"{'yes' if out == alone_out else 'NO':11}  {chosen}")
    print("target (issue 18): slowdown <= 2.5x")


if __name__ == "__main__":
    main()
