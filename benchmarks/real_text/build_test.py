"""Rebuild the real-text test sets, `test.jsonl`, `test_contact.jsonl` and `test_third.jsonl`, from their parts
(DATA_SOURCES.md, "Real-text test sets").

    python benchmarks/real_text/build_test.py [--check] [--set NAME] [--mirrors /work/.mirror]

Each part in `test_parts/` has its own `build.py` (what it reads, how it selects, its hand
corrections in `corrections.json`, its notes in `NOTES.md`); this runs a set's parts in order and
joins what they write. The man-page part reads this machine's Debian packages, the git part the
bare mirrors of six public repositories (`--mirrors`) and CPython's own test e-mails, the other
parts the mirrors of the repositories their NOTES.md name: a rebuild elsewhere differs where those
do. `--check` compares a rebuild with the committed file instead of writing it.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
SETS = {  # each set's parts, in the order of its lines
    "test.jsonl": ("man_and_credits", "git_and_email", "fixtures"),
    "test_contact.jsonl": ("detector_fixtures", "addresses_and_forms"),
    "test_third.jsonl": ("records_and_cvs", "chats_and_tickets"),
}
TAKES_MIRRORS = {"git_and_email", "fixtures", "detector_fixtures", "addresses_and_forms", "records_and_cvs",
                 "chats_and_tickets"}


def build_part(name: str, out: Path, mirrors: str | None) -> str:
    command = [sys.executable, str(HERE / "test_parts" / name / "build.py"), "--out", str(out)]
    if mirrors and name in TAKES_MIRRORS:
        command += ["--mirrors", mirrors]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return out.read_text(encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="compare each rebuild with the committed file")
    parser.add_argument("--set", choices=sorted(SETS), help="rebuild only this set (default: all)")
    parser.add_argument("--mirrors", default=None, help="where `fetch` put the bare git mirrors")
    args = parser.parse_args(argv)
    differs = 0
    for name in [args.set] if args.set else SETS:
        differs += rebuild(HERE / name, SETS[name], args.mirrors, args.check)
    return 1 if differs else 0


def rebuild(path: Path, parts: tuple[str, ...], mirrors: str | None, check: bool) -> bool:
    """Rebuild one set from its parts; with `check`, whether the rebuild differs from `path`."""
    with tempfile.TemporaryDirectory() as tmp:
        rebuilt = "".join(build_part(name, Path(tmp) / f"{name}.jsonl", mirrors) for name in parts)
    if check:
        same = rebuilt == path.read_text(encoding="utf-8")
        print(f"{path.name}: {'the same' if same else 'DIFFERS from the rebuild'}")
        return not same
    path.write_text(rebuilt, encoding="utf-8")
    print(f"wrote {rebuilt.count(chr(10))} texts to {path}")
    return False


if __name__ == "__main__":
    sys.exit(main())
