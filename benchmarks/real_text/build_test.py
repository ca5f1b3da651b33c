"""Rebuild the real-text test set, `test.jsonl`, from its parts (DATA_SOURCES.md, "Test set").

    python benchmarks/real_text/build_test.py [--check] [--mirrors /work/.mirror]

Each part in `test_parts/` has its own `build.py` (what it reads, how it selects, its hand
corrections in `corrections.json`, its notes in `NOTES.md`); this runs them in order and joins
what they write. The man-page part reads this machine's Debian packages, the git part the bare
mirrors of six public repositories (`--mirrors`) and CPython's own test e-mails, the fixtures part
the mirrors of the repositories its NOTES.md names: a rebuild elsewhere differs where those do.
`--check` compares a rebuild with the committed file instead of writing it.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
TEST = HERE / "test.jsonl"
PARTS = ("man_and_credits", "git_and_email", "fixtures")  # the order of test.jsonl's lines
TAKES_MIRRORS = {"git_and_email", "fixtures"}


def build_part(name: str, out: Path, mirrors: str | None) -> str:
    command = [sys.executable, str(HERE / "test_parts" / name / "build.py"), "--out", str(out)]
    if mirrors and name in TAKES_MIRRORS:
        command += ["--mirrors", mirrors]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return out.read_text(encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="compare a rebuild with test.jsonl")
    parser.add_argument("--mirrors", default=None, help="where `fetch` put the bare git mirrors")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        rebuilt = "".join(build_part(name, Path(tmp) / f"{name}.jsonl", args.mirrors) for name in PARTS)
    if args.check:
        same = rebuilt == TEST.read_text(encoding="utf-8")
        print(f"{TEST.name}: {'the same' if same else 'DIFFERS from the rebuild'}")
        return 0 if same else 1
    TEST.write_text(rebuilt, encoding="utf-8")
    print(f"wrote {rebuilt.count(chr(10))} texts to {TEST}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
