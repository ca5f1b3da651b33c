"""Build the git-log and e-mail part of the real-text test set (benchmarks/real_text/test.jsonl;
`build_test.py` there joins the parts).

    python build.py [--mirrors /work/.mirror] [--email-dir DIR] [--out part.jsonl] [--drafts]

Sources
  git-log       commit messages (Author/Date header + message) from six public repositories,
                commits that credit somebody, chosen by a fixed every-Nth rule per repository.
  git-prose     commit messages that credit no one, Author/Date header removed (negatives).
  email-fixture RFC 2822 test messages shipped with CPython 3.11.7's test suite
                (Lib/test/test_email/data/msg_*.txt): people-bearing headers + readable body.

Labels: drafts come from the structure (Author line, X-by: trailers, From/To/Cc display names
and addresses); hand corrections in corrections.json (keyed by id) are applied on top; every
value is then marked at EVERY occurrence in the text (word-boundary match, longest value
first, no overlaps). `--drafts` writes drafts.jsonl (no corrections) for review.
"""

from __future__ import annotations

import argparse
import email
import email.policy
import json
import re
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
import marking  # noqa: E402
from marking import MAX_CHARS, corrected, mark_all, validate, write_part  # noqa: E402

EMAIL_DIR = Path("/root/.pyenv/versions/3.11.7/lib/python3.11/test/test_email/data")

# repo -> (licence, positive date range, #positives, negative date range, #negatives)
REPOS = {
    "curl/curl": ("curl (MIT-style)", ("2023-01-01", "2023-07-01"), 11, ("2022-01-01", "2022-07-01"), 4),
    "git/git": ("GPL-2.0", ("2023-01-01", "2023-04-01"), 11, ("2010-01-01", "2010-07-01"), 4),
    "tmux/tmux": ("ISC", ("2015-01-01", "2024-01-01"), 10, ("2019-01-01", "2020-01-01"), 4),
    "GNOME/gnome-calculator": ("GPL-3.0-or-later", ("2005-01-01", "2024-01-01"), 10,
                               ("2013-01-01", "2020-01-01"), 4),
    "KDE/konsole": ("GPL-2.0-or-later", ("2005-01-01", "2024-01-01"), 10,
                    ("2015-01-01", "2020-01-01"), 5),
    "pallets/click": ("BSD-3-Clause", ("2018-01-01", "2024-01-01"), 10, ("2020-01-01", "2022-01-01"), 4),
}

# Commits left out after reading (commit hash prefix -> reason); applied before numbering.
EXCLUDE: dict[str, str] = {
    "e2d0a4502f11": "git-prose candidate names a person (\"Jakub's changes\"): not a negative",
    "3747ecfde080": "git-prose candidate addresses a person (\"Martin, this ...\"): not a negative",
    "6ce38b739568": "git-prose candidate names two people by handle (nicm, millert): not a negative",
}

# A commit "credits someone" if its message matches CREDIT_CI or CREDIT_CS (a capitalised
# name after from/by, case-sensitive).
CREDIT_CS = re.compile(r"\bfrom [A-Z][a-z]+(?: [A-Z][\w'-]+)+|\bby [A-Z][a-z]+ [A-Z]|"
                       r"\b[Tt]hanks?\b(?!:)")
CREDIT_CI = re.compile(
    r"^\s*[A-Za-z]+(?:-[A-Za-z]+)*-by:|\bthank you\b|patch (?:by|from)|reported by|suggested by|"
    r"(?<![\w.])@[A-Za-z0-9]|\bcredits?\b|co-author|\b(?:helped|reviewed|contributed|updated|"
    r"translation|translated|fixed|written|submitted) by\b",
    re.IGNORECASE | re.MULTILINE)
# Git/GNOME/KDE positives must credit someone besides the author's own sign-off.
OTHER_TRAILER = re.compile(r"^\s*(?!Signed-off-by)[A-Za-z]+(?:-[A-Za-z]+)*-by:|^\s*Thanks-to:",
                           re.MULTILINE)
# Negatives: nothing that could be a person (checked by hand afterwards as well).
NEG_BAD = re.compile(r"@|\bby\b|thank|from [A-Z]|[A-Z][a-z]+ [A-Z][a-z]+|\b[A-Z][a-z]+:|"
                     r"svn path|cherry picked|https?://|\b[A-Z]\.",)
NEG_BAD_CI = re.compile(r"thank|credit|report|suggest|patch from|review|help|idea", re.IGNORECASE)
BOTS = re.compile(r"bot\]|daemon|script|noreply@github\.com|^GitHub$|weblate|translat", re.I)

TRAILER_LINE = re.compile(r"^\s*([A-Za-z]+(?:-[A-Za-z]+)*):\s*(.*)$")
NAME_ADDR = re.compile(r"^(?P<name>[^<>]*?)\s*<(?P<addr>[^<>\s]+@[^<>\s]+)>\s*$")
ON_GITHUB = re.compile(r"^(?P<handle>[\w.-]+) on (?:github|hackerone|gitter|irc)\b", re.I)
AT_HANDLE = re.compile(r"(?<![\w.@/])@([A-Za-z0-9](?:[A-Za-z0-9-]{0,38}[A-Za-z0-9])?)\b(?![.@]\w)")


# ---------------------------------------------------------------------------------- git
def git_commits(gitdir: Path, since: str, until: str) -> list[dict]:
    fmt = "%x00%H%x01%an%x01%ae%x01%ad%x01%B"
    out = subprocess.run(
        ["git", f"--git-dir={gitdir}", "log", "--no-merges", "--reverse",
         f"--since={since}", f"--until={until}", "--date=default", f"--format={fmt}", "HEAD"],
        check=True, capture_output=True).stdout.decode("utf-8", "replace")
    commits = []
    for rec in out.split("\x00")[1:]:
        h, an, ae, ad, body = rec.split("\x01", 4)
        body = body.replace("\r\n", "\n")  # one commit (click f82fe35) has a CRLF line end
        commits.append({"hash": h, "an": an, "ae": ae, "ad": ad, "msg": body.strip("\n")})
    return commits


def every_nth(items: list, quota: int) -> list:
    if len(items) <= quota:
        return items
    step = len(items) / quota
    return [items[int(i * step)] for i in range(quota)]


def is_trailer_para(para: str) -> bool:
    lines = [ln for ln in para.splitlines() if ln.strip()]
    return bool(lines) and all(TRAILER_LINE.match(ln) or ln.startswith("(cherry picked")
                               for ln in lines)


def fit_message(msg: str, budget: int) -> str | None:
    """Subject + leading body paragraphs that fit + the trailer paragraph; cut at paragraphs."""
    paras = re.split(r"\n\s*\n", msg.strip("\n"))
    paras = [p.rstrip() for p in paras]
    trailer = paras[-1] if len(paras) > 1 and is_trailer_para(paras[-1]) else None
    body = paras[:-1] if trailer else paras

    def cost(ps):  # every line indented by 4 in git log output, blank separator lines too
        txt = "\n\n".join(ps)
        return len(txt) + 4 * (txt.count("\n") + 1)

    kept = [body[0]]
    for p in body[1:]:
        if cost(kept + [p] + ([trailer] if trailer else [])) <= budget:
            kept.append(p)
        else:
            break
    if trailer:
        tl = trailer.splitlines()
        while tl and cost(kept + ["\n".join(tl)]) > budget:
            tl.pop()  # drop trailer lines from the end, whole lines only
        if tl:
            kept.append("\n".join(tl))
    if cost(kept) > budget:
        return None
    return "\n\n".join(kept)


def indent(msg: str) -> str:
    return "\n".join("    " + ln for ln in msg.split("\n"))


def git_texts(mirrors: Path) -> tuple[list[dict], list[dict]]:
    pos, neg = [], []
    for repo, (lic, prange, npos, nrange, nneg) in REPOS.items():
        gitdir = marking.git_dir(mirrors, repo)
        # positives
        cands = []
        for c in git_commits(gitdir, *prange):
            if any(c["hash"].startswith(x) for x in EXCLUDE):
                continue
            msg = c["msg"]
            if not (CREDIT_CI.search(msg) or CREDIT_CS.search(msg)):
                continue
            if repo == "git/git" and not OTHER_TRAILER.search(msg):
                continue
            if BOTS.search(c["an"]) or BOTS.search(c["ae"]):
                continue
            header = f"Author: {c['an']} <{c['ae']}>\nDate:   {c['ad']}\n\n"
            fitted = fit_message(msg, MAX_CHARS - len(header))
            if fitted is None or not (CREDIT_CI.search(fitted) or CREDIT_CS.search(fitted)):
                continue
            cands.append((c, header + indent(fitted)))
        for c, text in every_nth(cands, npos):
            pos.append({"source": "git-log", "genre": "commit message", "text": text,
                        "origin": f"github:{repo}@{c['hash']}", "_commit": c, "_repo": repo})
        # negatives (bot/l10n commits and repeated messages left out)
        cands, seen_neg = [], set()
        for c in git_commits(gitdir, *nrange):
            if any(c["hash"].startswith(x) for x in EXCLUDE):
                continue
            msg = c["msg"]
            if CREDIT_CI.search(msg) or CREDIT_CS.search(msg) or NEG_BAD.search(msg) \
                    or NEG_BAD_CI.search(msg) or len(msg) < 120:
                continue
            if BOTS.search(c["an"]) or BOTS.search(c["ae"]) or msg in seen_neg:
                continue
            seen_neg.add(msg)
            fitted = fit_message(msg, 10_000)
            if len(fitted) > MAX_CHARS:
                paras = fitted.split("\n\n")
                while len("\n\n".join(paras)) > MAX_CHARS and len(paras) > 1:
                    paras.pop()
                fitted = "\n\n".join(paras)
                if len(fitted) > MAX_CHARS:
                    continue
            cands.append((c, fitted))
        for c, text in every_nth(cands, nneg):
            neg.append({"source": "git-prose", "genre": "commit message", "text": text,
                        "origin": f"github:{repo}@{c['hash']}", "_repo": repo})
    return pos, neg


def git_drafts(rec: dict) -> list[tuple[str, str]]:
    """Values found from the structure: Author line, X-by: trailers, @handles."""
    vals = []
    text = rec["text"]
    m = re.match(r"Author: (.*) <(.*)>\n", text)
    if m:
        name, addr = m.group(1), m.group(2)
        if "@" in addr:
            vals.append((addr, "EMAIL"))
        elif addr == name:
            vals.append((name, "USERNAME"))
        if name and name != addr:
            vals.append((name, "NAME"))
    for ln in text.splitlines():
        t = TRAILER_LINE.match(ln)
        if not t or not t.group(1).lower().endswith(("-by", "-to")) or t.group(1) == "Date":
            continue
        v = t.group(2).strip()
        na = NAME_ADDR.match(v)
        if na:
            if na.group("name").strip():
                vals.append((na.group("name").strip(), "NAME"))
            vals.append((na.group("addr"), "EMAIL"))
            continue
        gh = ON_GITHUB.match(v)
        if gh:
            vals.append((gh.group("handle"), "USERNAME"))
            continue
        if v and "@" not in v and not v.startswith(("#", "http")):
            vals.append((v, "NAME"))
    for a in ADDR.findall(text):
        vals.append((a, "EMAIL"))
    for h in AT_HANDLE.finditer(text):
        vals.append((h.group(1), "USERNAME"))
    return vals


# -------------------------------------------------------------------------------- email
KEEP_HEADERS = ("from", "to", "cc", "reply-to", "sender", "return-path", "subject", "date")


def email_texts(email_dir: Path) -> list[dict]:
    recs, seen = [], set()
    for path in sorted(email_dir.glob("msg_*.txt")):
        raw = path.read_bytes().decode("latin-1")
        raw = raw.replace("\r\n", "\n")
        head, _, _ = raw.partition("\n\n")
        # header block: keep the wanted fields with their continuation lines
        kept, keep = [], False
        for ln in head.split("\n"):
            if ln[:1] in (" ", "\t"):
                if keep:
                    kept.append(ln)
                continue
            name = ln.split(":", 1)[0].strip().lower()
            keep = ":" in ln and name in KEEP_HEADERS
            if keep:
                kept.append(ln)
        msg = email.message_from_string(raw, policy=email.policy.compat32)
        bodies = []
        for part in msg.walk():
            if part.is_multipart():
                continue
            cte = (part.get("Content-Transfer-Encoding") or "").lower()
            ctype = part.get_content_type()
            if part.get_content_maintype() != "text" and not (ctype == "message/rfc822"):
                continue
            if "base64" in cte:
                continue
            payload = part.get_payload()
            if not isinstance(payload, str):
                continue
            payload = payload.strip("\n")
            if payload.strip():
                bodies.append(payload)
        if not kept and msg.is_multipart() is False and not bodies:
            continue
        text = "\n".join(kept)
        for b in bodies:
            sep = "\n\n" if text else ""
            lines = b.split("\n")
            while lines and len(text + sep + "\n".join(lines)) > MAX_CHARS:
                lines.pop()  # cut at a line boundary
            if not lines:
                break
            text = text + sep + "\n".join(lines).rstrip()
            if len(lines) < len(b.split("\n")):
                break
        text = text.strip("\n")
        if not text or text in seen or len(text) < 40:
            continue
        seen.add(text)
        recs.append({"source": "email-fixture", "genre": "e-mail (test fixture)", "text": text,
                     "origin": f"cpython-3.11.7:Lib/test/test_email/data/{path.name}"})
    return recs


ADDR = re.compile(r"[\w.+=-]+@[\w-]+(?:\.[\w-]+)+")
ROLE = re.compile(r"^(?:postmaster|mailer-daemon|nobody|noreply|no-reply|root|admin|info|help|"
                  r"webmaster|internet-drafts|owner-[\w.-]+|"
                  r"support|bugs?|list|.*-(?:request|admin|owner|bounces?|devel|users|announce))@",
                  re.I)


def email_drafts(rec: dict) -> list[tuple[str, str]]:
    vals = []
    for ln in rec["text"].split("\n\n", 1)[0].split("\n"):
        m = re.match(r"(From|To|Cc|Reply-To|Sender|Return-Path):", ln, re.I)
        if not m:
            continue
        for a in ADDR.findall(ln):
            if not ROLE.match(a):
                vals.append((a, "EMAIL"))
        for n in re.findall(r"\(([^()@]+)\)", ln):  # addr (Display Name)
            vals.append((n.strip(), "NAME"))
        for n in re.findall(r"(?:^[\w-]+:|,)\s*\"?([^\",:<>@()]+?)\"?\s*<", ln):
            vals.append((n.strip(), "NAME"))
    return vals


# -------------------------------------------------------------------------------- spans




def build(mirrors: Path, email_dir: Path, use_corrections: bool = True) -> list[dict]:
    corr = json.loads((HERE / "corrections.json").read_text(encoding="utf-8")) \
        if use_corrections and (HERE / "corrections.json").exists() else {}
    pos, neg = git_texts(mirrors)
    mails = email_texts(email_dir)
    out = []
    for src, recs, drafter in (("git-log", pos, git_drafts), ("git-prose", neg, lambda r: []),
                               ("email-fixture", mails, email_drafts)):
        for i, r in enumerate(recs, 1):
            rid = f"{src}-{i:03d}"
            spans = mark_all(r["text"], corrected(rid, r["origin"], drafter(r), corr))
            out.append({"id": rid, "source": src, "genre": r["genre"], "lang": "en",
                        "text": r["text"], "spans": spans, "origin": r["origin"]})
    validate(out)
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mirrors", type=Path, default=Path(marking.MIRRORS))
    ap.add_argument("--email-dir", type=Path, default=EMAIL_DIR)
    ap.add_argument("--out", type=Path, default=HERE / "part.jsonl")
    ap.add_argument("--drafts", action="store_true", help="write drafts.jsonl, no corrections")
    a = ap.parse_args()
    recs = build(a.mirrors, a.email_dir, use_corrections=not a.drafts)
    out = HERE / "drafts.jsonl" if a.drafts else a.out
    write_part(recs, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
