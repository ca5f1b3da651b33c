"""Build benchmarks/real_text/dev.jsonl: hand-written texts plus real third-party text on this machine.

    python benchmarks/real_text/build_dev.py [--out benchmarks/real_text/dev.jsonl] [--check]

Sources and licences are in DATA_SOURCES.md. `--check` rebuilds in memory and fails if the
committed file differs (the real-text part depends on the installed Debian and PyPI packages).
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import sys
from importlib import metadata
from pathlib import Path

HERE = Path(__file__).resolve().parent
HAND = HERE / "hand_written.txt"
DEV = HERE / "dev.jsonl"
PYPI_LIST = HERE / "pypi_packages.txt"
DOC = Path("/usr/share/doc")
LABELS = ("NAME", "EMAIL", "USERNAME", "ID_NUM", "PHONE_NUM", "URL_PERSONAL", "STREET_ADDRESS")

# How many texts each real source contributes (the first that pass its filters, in sorted order).
QUOTA = {"debian-changelog": 70, "debian-copyright": 40, "python-docs": 160, "pypi-readme": 70}
MAX_CHARS = 600
PER_TOPIC = 3  # prose paragraphs taken from one topic of Python's reference

_MARK = re.compile(r"\[\[(.+?)\|([A-Z_]+)\]\]", re.DOTALL)
# Two capitalised words in a row: may be a person's name, so a text meant to be PII-free (or
# labelled only by its structure) that has one is left out rather than guessed at.
_NAME_LIKE = re.compile(r"\b[A-ZÀ-Þ][a-zà-ÿ'’-]+\s+(?:(?:van|de|von|da|di|le|la)\s+)?[A-ZÀ-Þ][a-zà-ÿ'’-]+")
_TEAM = re.compile(r"team|maintainers|project|packagers|group|debian|ubuntu|lists?\b|tracker",
                   re.IGNORECASE)
_PERSON = r"[A-ZÀ-Þ][\w.'’-]*(?:\s+(?:van|de|von|da|di|le|la|del|der|den)?\s*[A-ZÀ-Þ][\w.'’-]*){1,3}"
_EMAIL = r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+"


def parse_marked(body: str) -> tuple[str, list[dict]]:
    """Text with [[value|LABEL]] marks -> (plain text, spans); `[[x|]]`-style marks are errors."""
    text, spans, at = [], [], 0
    length = 0
    for m in _MARK.finditer(body):
        before = body[at:m.start()]
        text.append(before)
        length += len(before)
        value, label = m.group(1), m.group(2)
        if label not in LABELS or "[[" in value:
            raise ValueError(f"bad mark {m.group(0)!r}")
        spans.append({"start": length, "end": length + len(value), "label": label, "value": value})
        text.append(value)
        length += len(value)
        at = m.end()
    text.append(body[at:])
    plain = "".join(text)
    if "[[" in plain or "]]" in plain:
        raise ValueError(f"unclosed mark near {plain[plain.find('[['):][:40]!r}")
    return plain, spans


def hand_written(path: Path = HAND) -> list[dict]:
    """The hand-written texts: blocks headed '=== ID | GENRE | LANG'."""
    records, header, lines = [], None, []

    def flush():
        if header is None:
            return
        id_, genre, lang = (part.strip() for part in header.split("|"))
        text, spans = parse_marked("\n".join(lines).strip("\n"))
        records.append({"id": id_, "source": "hand", "genre": genre, "lang": lang,
                        "text": text, "spans": spans})

    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("=== "):
            flush()
            header, lines = line[4:], []
        elif header is not None:
            lines.append(line)
    flush()
    return records


def _find_spans(text: str, items: list[tuple[str, str]]) -> list[dict]:
    """Every occurrence of each (value, label) in text, as sorted spans."""
    spans = []
    for value, label in items:
        for m in re.finditer(re.escape(value), text):
            spans.append({"start": m.start(), "end": m.end(), "label": label, "value": value})
    spans.sort(key=lambda s: s["start"])
    return spans


def debian_changelog(quota: int) -> list[dict]:
    """The newest changelog.Debian entry per package whose bullets name no one (by _NAME_LIKE)."""
    trailer = re.compile(rf"^ -- ({_PERSON}) <({_EMAIL})>  .+$", re.MULTILINE)
    out, seen = [], set()
    for path in sorted(DOC.glob("*/changelog.Debian.gz")):
        try:
            raw = gzip.decompress(path.read_bytes()).decode("utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        for entry in re.split(r"\n(?=\S)", raw.strip())[:6]:
            entry = entry.strip()
            m = trailer.search(entry)
            if not m or len(entry) > MAX_CHARS or _TEAM.search(m.group(1) + m.group(2)):
                continue
            body = entry[entry.find("\n"):m.start()]
            if _NAME_LIKE.search(body) or re.search(r"@|<|https?:|thank", body, re.IGNORECASE):
                continue
            if entry.split()[0] in seen:  # binary packages of one source share a changelog
                break
            seen.add(entry.split()[0])
            spans = _find_spans(entry, [(m.group(1), "NAME"), (m.group(2), "EMAIL")])
            out.append({"id": f"debian-changelog-{path.parent.name}", "source": "debian-changelog",
                        "genre": "changelog", "lang": "en", "text": entry, "spans": spans,
                        "origin": str(path)})
            break
        if len(out) == quota:
            break
    return out


_COPYRIGHT_LINE = re.compile(
    rf"^(?:Copyright:)?\s*(?:(?:©|\([cC]\)|Copyright)\s*)?[\d\s,–-]*,?\s*({_PERSON})\s*,?\s*<({_EMAIL})>\s*$")


def debian_copyright(quota: int) -> list[dict]:
    """DEP-5 'Files:' paragraphs whose every Copyright line is one person with an email."""
    out, seen = [], set()
    for path in sorted(DOC.glob("*/copyright")):
        try:
            raw = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        if not raw.startswith("Format:"):
            continue
        for para in raw.split("\n\n"):
            para = para.strip()
            if not para.startswith("Files:") or len(para) > MAX_CHARS:
                continue
            lines = para.splitlines()
            holders = [i for i, line in enumerate(lines)
                       if line.startswith("Copyright:") or (line.startswith(" ") and i and
                           all(not lines[j].startswith(("License:", "Comment:")) for j in range(1, i)))]
            items, ok = [], bool(holders)
            for i in holders:
                m = _COPYRIGHT_LINE.match(lines[i])
                if not m or _TEAM.search(m.group(1) + m.group(2)):
                    ok = False
                    break
                items += [(m.group(1), "NAME"), (m.group(2), "EMAIL")]
            if not ok or len(para) < 60 or para in seen:
                continue
            seen.add(para)
            out.append({"id": f"debian-copyright-{path.parent.name}", "source": "debian-copyright",
                        "genre": "copyright", "lang": "en", "text": para,
                        "spans": _find_spans(para, list(dict.fromkeys(items))), "origin": str(path)})
            break
        if len(out) == quota:
            break
    return out


def _prose(paragraph: str) -> bool:
    """A paragraph of running prose with nothing that could be PII."""
    p = paragraph.strip()
    return (120 <= len(p) <= 450 and p[-1] in ".:" and p[0].isupper() and "\n  " not in p
            and not re.search(r"@|https?:|www\.|>>>|::|\$ |`|\*\*|\.\. |\|", p)
            and not _NAME_LIKE.search(re.sub(r"^\S+\s", "", p)))


def python_docs(quota: int) -> list[dict]:
    """Prose paragraphs of Python's own reference (pydoc_data.topics), one per topic."""
    from pydoc_data.topics import topics

    out = []
    for key in sorted(topics):
        taken = 0
        for para in re.split(r"\n\s*\n", topics[key]):
            para = " ".join(para.split())
            if _prose(para) and taken < PER_TOPIC:
                taken += 1
                out.append({"id": f"python-docs-{key}", "source": "python-docs", "genre": "docs",
                            "lang": "en", "text": para, "spans": [],
                            "origin": f"pydoc_data.topics[{key!r}] (Python {sys.version.split()[0]})"})
                out[-1]["id"] += f"-{taken}"
                if len(out) == quota:
                    break
        if len(out) == quota:
            break
    return out


_PERMISSIVE = re.compile(r"\b(MIT|BSD|Apache|PSF|Python Software Foundation|ISC|MPL)", re.IGNORECASE)


def _licence(meta) -> str:
    expression = meta.get("License-Expression") or ""
    classifiers = [c for c in meta.get_all("Classifier") or [] if c.startswith("License ::")]
    short = (meta.get("License") or "").splitlines()[0][:60] if meta.get("License") else ""
    return expression or "; ".join(c.split("::")[-1].strip() for c in classifiers) or short


def pypi_readme(quota: int) -> list[dict]:
    """Prose paragraphs from the long descriptions of the distributions in pypi_packages.txt."""
    names = [line.strip() for line in PYPI_LIST.read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    out = []
    for name in names:
        try:
            meta = metadata.metadata(name)
        except metadata.PackageNotFoundError:
            raise SystemExit(f"build_dev.py: error: {PYPI_LIST}: {name} is not installed") from None
        licence = _licence(meta)
        if not _PERMISSIVE.search(licence):
            continue
        description = meta.get_payload() or meta.get("Description") or ""
        for para in re.split(r"\n\s*\n", description):
            para = " ".join(para.split())
            if _prose(para) and not re.search(r"[#\[\]<>{}=]", para):
                out.append({"id": f"pypi-readme-{name.lower()}", "source": "pypi-readme",
                            "genre": "readme", "lang": "en", "text": para, "spans": [],
                            "origin": f"{meta['Name']} {meta['Version']} METADATA ({licence})"})
                break
        if len(out) == quota:
            break
    return out


def check(records: list[dict]) -> None:
    """Every span's value is its text slice, labels are piilab's, spans sorted and disjoint, ids unique."""
    ids = set()
    for r in records:
        if r["id"] in ids:
            raise ValueError(f"{r['id']}: duplicate id")
        ids.add(r["id"])
        end = 0
        for s in r["spans"]:
            if r["text"][s["start"]:s["end"]] != s["value"] or s["label"] not in LABELS:
                raise ValueError(f"{r['id']}: span {s} does not match its text")
            if s["start"] < end or s["value"] != s["value"].strip():
                raise ValueError(f"{r['id']}: span {s} overlaps, is unsorted or has outer spaces")
            end = s["end"]


def build() -> list[dict]:
    records = hand_written()
    records += debian_changelog(QUOTA["debian-changelog"])
    records += debian_copyright(QUOTA["debian-copyright"])
    records += python_docs(QUOTA["python-docs"])
    records += pypi_readme(QUOTA["pypi-readme"])
    check(records)
    return records


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEV)
    parser.add_argument("--check", action="store_true", help="compare with the committed file")
    args = parser.parse_args(argv)
    records = build()
    body = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    if args.check:
        same = args.out.read_text(encoding="utf-8") == body
        print("dev set up to date" if same else f"{args.out} differs from a rebuild")
        return 0 if same else 1
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(body, encoding="utf-8")
    tmp.replace(args.out)
    counts: dict[str, int] = {}
    for r in records:
        counts[r["source"]] = counts.get(r["source"], 0) + 1
    free = sum(not r["spans"] for r in records)
    print(f"{len(records)} texts ({free} without PII) -> {args.out}: {counts}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
