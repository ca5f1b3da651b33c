"""What the test set's part builders share: the labels, the length limit, marking every
occurrence of a value, and the checks every record passes before a part is written."""

from __future__ import annotations

import argparse
import json
import re
import subprocess
from pathlib import Path

LABELS = ("NAME", "EMAIL", "USERNAME", "ID_NUM", "PHONE_NUM", "URL_PERSONAL", "STREET_ADDRESS")
MAX_CHARS = 600
KEYS = {"id", "source", "genre", "lang", "text", "spans", "origin"}
MIRRORS = "/work/.mirror"  # where `fetch` puts the bare git mirrors the parts read


def mark_all(text: str, values: list[tuple[str, str]]) -> list[dict]:
    """Mark every occurrence of every value (word-boundary; longer values first; no overlap)."""
    taken: list[tuple[int, int]] = []
    spans = []
    for value, label in sorted(dict.fromkeys(v for v in values if v[0]), key=lambda v: -len(v[0])):
        if label not in LABELS:
            raise ValueError(f"bad label {label}")
        found = False
        for m in re.finditer(r"(?<![\w])" + re.escape(value) + r"(?![\w])", text):
            start, end = m.span()
            if any(start < e and s < end for s, e in taken):
                continue
            taken.append((start, end))
            spans.append({"start": start, "end": end, "label": label, "value": value})
            found = True
        if not found:
            raise ValueError(f"value {value!r} ({label}) not found (free) in text")
    return sorted(spans, key=lambda s: s["start"])


def validate(records: list[dict]) -> None:
    """Unique ids, the record keys, 1 to MAX_CHARS characters, and spans that match their text,
    in order, without overlaps or edge whitespace, in the seven labels."""
    ids = set()
    for r in records:
        assert r["id"] not in ids, r["id"]
        ids.add(r["id"])
        assert set(r) == KEYS, r["id"]
        assert 0 < len(r["text"]) <= MAX_CHARS, (r["id"], len(r["text"]))
        prev_end = -1
        for s in r["spans"]:
            assert s["label"] in LABELS, (r["id"], s)
            assert r["text"][s["start"]:s["end"]] == s["value"], (r["id"], s)
            assert s["start"] < s["end"] and s["start"] >= prev_end, (r["id"], "overlap/unsorted", s)
            assert s["value"] == s["value"].strip(), (r["id"], "whitespace at span edge", s)
            prev_end = s["end"]


def write_part(records: list[dict], out) -> None:
    """Write a part's records as JSON lines and print what it holds, by source and by label."""
    with open(out, "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    counts: dict = {}
    for r in records:
        counts.setdefault(r["source"], [0, 0])
        counts[r["source"]][0] += 1
        counts[r["source"]][1] += len(r["spans"])
        for s in r["spans"]:
            counts[s["label"]] = counts.get(s["label"], 0) + 1
    print(f"wrote {len(records)} records to {out}; validation passed")
    print(json.dumps(counts, indent=None))


def corrected(rid: str, origin: str, values: list[tuple[str, str]],
              corrections: dict) -> list[tuple[str, str]]:
    """The draft (value, label) pairs of record `rid` with its hand corrections applied ("drop",
    "relabel", "add"); corrections written for another origin, or naming a value the drafts do
    not hold, are an error."""
    c = corrections.get(rid, {})
    if c.get("origin") and c["origin"] != origin:
        raise ValueError(f"{rid}: corrections written for {c['origin']}, got {origin}")
    drop = {tuple(x) for x in c.get("drop", [])}
    relabel = {x[0]: x[1] for x in c.get("relabel", [])}
    missing = (drop - set(values)) | (set(relabel) - {v for v, _ in values})
    if missing:
        raise ValueError(f"{rid}: corrections name values not in the drafts: {missing}")
    kept = [(v, relabel.get(v, label)) for v, label in values if (v, label) not in drop]
    return kept + [tuple(x) for x in c.get("add", [])]


def dump(records: list[dict]) -> None:
    """Print each record's text and spans, for reading a part by eye (the builders' --dump)."""
    for r in records:
        print(f"\n########## {r['id']}  {r['origin']}  ({len(r['text'])} chars, {r['lang']})")
        print(r["text"])
        print("---- spans:")
        for s in r["spans"]:
            print(f"   {s['label']:14} {s['value']!r}")


def git_dir(mirrors, repo: str):
    """Where `fetch` keeps a repository's bare mirror (a work tree's .git where there is one)."""
    folder = mirrors / repo.replace("/", "+") / "repo"
    return folder / ".git" if (folder / ".git").is_dir() else folder


def git_show(mirrors, repo: str, commit: str, path: str) -> str:
    """A file of a mirrored repository at a pinned commit, as text with "\\n" line ends (UTF-8, a
    byte-order mark dropped; Latin-1 where it is not UTF-8, as a few bank statements are)."""
    raw = subprocess.run(["git", f"--git-dir={git_dir(mirrors, repo)}", "show", f"{commit}:{path}"],
                         check=True, capture_output=True).stdout
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    return text.replace("\r\n", "\n").replace("\r", "\n")


def numbered_records(items, repos: dict, genre: dict, corrections: dict | None) -> list[dict]:
    """A part's records from its (source, repo, path, anchor, lang, text) items, in their order:
    ids numbered per source ("cv-001"), the origin pinned to the repository's commit, each text's
    hand-labelled values (`corrected`, none drafted) marked at every occurrence, or no spans at
    all where `corrections` is None; a text that repeats an earlier one is left out. `lang`
    comes from the item, else from the text's corrections, else "en"."""
    out, counters, seen = [], {}, set()
    for source, repo, path, anchor, lang, text in items:
        if text in seen:
            continue
        seen.add(text)
        counters[source] = counters.get(source, 0) + 1
        rid = f"{source}-{counters[source]:03d}"
        origin = f"github:{repo}@{repos[repo][0]}:{path}" + (f"#{anchor}" if anchor else "")
        spans = [] if corrections is None else mark_all(text, corrected(rid, origin, [], corrections))
        out.append({"id": rid, "source": source, "genre": genre[source],
                    "lang": lang or (corrections or {}).get(rid, {}).get("lang", "en"), "text": text,
                    "spans": spans, "origin": origin})
    validate(out)
    return out


def part_command(build, here: Path) -> int:
    """A part's command line: `build.py [--mirrors DIR] [--out FILE] [--dump] [--nolabels]`, where
    `build(mirrors, labels)` makes the part's records."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--mirrors", type=Path, default=Path(MIRRORS))
    ap.add_argument("--out", type=Path, default=here / "part.jsonl")
    ap.add_argument("--dump", action="store_true", help="print texts with spans")
    ap.add_argument("--nolabels", action="store_true", help="texts only (no corrections.json)")
    a = ap.parse_args()
    records = build(a.mirrors, labels=not a.nolabels)
    if a.dump:
        dump(records)
    else:
        write_part(records, a.out)
    return 0
