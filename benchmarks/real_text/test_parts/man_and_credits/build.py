"""Build the man-page and credits part of the real-text test set (benchmarks/real_text/test.jsonl;
`build_test.py` there joins the parts).

    python build.py [--out part.jsonl]   # extract texts, draft labels, apply corrections.json, validate, write
    python build.py --drafts             # also write drafts.jsonl (texts + structure-derived draft labels)

Sources (all local files of this Debian 12 machine; `origin` records the file):
  man-author        AUTHOR(S) / REPORTING BUGS / COPYRIGHT / HISTORY / CONTRIBUTORS sections of
                    installed man pages (English) and the AUTHOR / translation sections of a few
                    translated man pages (/usr/share/man/<lang>/).
  upstream-credits  excerpts of upstream AUTHORS / THANKS / CREDITS / CONTRIBUTORS files under
                    /usr/share/doc/*/.
  man-prose         running-prose paragraphs of man pages' DESCRIPTION / OPTIONS sections.

Selection is deterministic: files in sorted order, ties and samples broken by sha1 of the path or
package name. Draft labels come from structure only (e-mail regex, "Name <email>" pairs); the final
labels are the drafts with the hand corrections in corrections.json applied (every text was read
and checked by hand; see NOTES.md).
"""

from __future__ import annotations

import collections
import glob
import gzip
import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from marking import MAX_CHARS, validate  # noqa: E402

OUT = HERE / "part.jsonl"
DRAFTS = HERE / "drafts.jsonl"
CORR = HERE / "corrections.json"
MAN = Path("/usr/share/man")
DOC = Path("/usr/share/doc")

N_MAN_AUTHOR_EN = 40       # English man pages, one per package, packages in sha1 order
N_MAN_AUTHOR_LANGS = ("de", "fr", "es", "it", "nl", "pl", "pt", "sv")   # one page each
N_REPORTING_BUGS = 5      # REPORTING BUGS sections alone (mostly negatives)
N_CREDITS = 36
N_PROSE = 50
MAX_PER_FAMILY = 3

# package "families": packages built from one source (at most MAX_PER_FAMILY texts per family
# and source); a package not listed is its own family
FAMILY_PREFIXES = ("dbus", "libpam", "libgnutls", "libgtk2.0", "libxslt1", "liblzma", "xz-utils",
                   "gnupg", "dirmngr", "libgcrypt20", "util-linux", "bsdutils", "bsdextrautils",
                   "mount", "llvm", "python3", "libpython3", "postgresql", "gettext", "perl",
                   "libperl", "cmake", "vim", "x11", "xauth", "openssh", "sysvinit", "init-system",
                   "libc", "libsasl", "libldap", "libedit", "libsemanage", "binutils", "gcc")


def family(pkg: str) -> str:
    if pkg in ("gnupg", "dirmngr", "gnupg-utils", "pinentry-curses"):
        return "gnupg"
    if pkg in ("xz-utils", "liblzma5", "liblzma-dev"):
        return "xz"
    for p in FAMILY_PREFIXES:
        if pkg.startswith(p):
            return p
    return pkg


def sha(s: str) -> str:
    return hashlib.sha1(s.encode("utf-8")).hexdigest()


def read_text(path: str) -> str:
    raw = gzip.open(path, "rb").read() if path.endswith(".gz") else open(path, "rb").read()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def owners() -> dict[str, str]:
    own = {}
    for lst in sorted(glob.glob("/var/lib/dpkg/info/*.list")):
        pkg = os.path.basename(lst)[:-5].split(":")[0]
        with open(lst, errors="replace") as fh:
            for line in fh:
                own.setdefault(line.strip(), pkg)
    return own


# ---------------------------------------------------------------------------- man rendering
def render(path: str) -> str:
    """Render a man page as plain text, one line per filled paragraph, no hyphenation."""
    cat = "zcat" if path.endswith(".gz") else "cat"
    cmd = (f"{cat} '{path}' | (printf '.de hy\\n..\\n.nh\\n'; cat) | "
           "groff -k -man -Tutf8 -rLL=3000n -rcR=1 -P-c 2>/dev/null | col -bx")
    out = subprocess.run(cmd, shell=True, capture_output=True, text=True, errors="replace").stdout
    return out


def sections(rendered: str) -> list[tuple[str, str]]:
    """(heading, body) pairs; body dedented by the standard 7 columns, blank runs collapsed."""
    lines = rendered.split("\n")
    # drop header (first non-empty) and footer (last non-empty) lines
    nonempty = [i for i, l in enumerate(lines) if l.strip()]
    if len(nonempty) < 3:
        return []
    lines = lines[nonempty[0] + 1:nonempty[-1]]
    secs: list[tuple[str, list[str]]] = []
    for line in lines:
        if line and not line[0].isspace():
            secs.append((line.strip(), []))
        elif secs:
            secs[-1][1].append(line)
    out = []
    for head, body in secs:
        body = [re.sub(r"^ {7}", "", l).rstrip() for l in body]
        text = re.sub(r"\n{3,}", "\n\n", "\n".join(body)).strip("\n")
        text = re.sub(r"[ \t]+$", "", text, flags=re.M)
        out.append((head, text))
    return out


def cut(text: str, limit: int = MAX_CHARS) -> str:
    """Cut at the last line boundary within limit (else the last sentence boundary)."""
    if len(text) <= limit:
        return text
    nl = text.rfind("\n", 0, limit + 1)
    if nl >= limit // 3:
        return text[:nl].rstrip()
    m = None
    for m_ in re.finditer(r"[.!?][)\"”]?(?=\s)", text[:limit]):
        m = m_
    if m:
        return text[:m.end()]
    return ""


AUTHOR_HEAD = re.compile(
    r"^(AUTHORS?|REPORTING BUGS|COPYRIGHT|HISTORY|CONTRIBUTORS|AUTHORS? AND COPYRIGHT|"
    r"AUTHORS / CONTRIBUTORS|AUTHOR AND LICEN[CS]E|COPYRIGHT AND LICEN[CS]E)$", re.I)
FOREIGN_HEAD = re.compile(
    r"^(AUTOR(EN|ES|I)?|AUTORZY|AUTEURS?|FÖRFATTARE|AUTEUR\(S\)|ÜBERSETZUNG|TRADUCTION|"
    r"TRADUCCIÓN|TRADUZIONE|VERTALING|TŁUMACZENIE|TRADUÇÃO|ÖVERSÄTTNING|COPYRIGHT|"
    r"FEHLER MELDEN|GESCHICHTE|HISTORIQUE)$", re.I)
REPORT_HEAD = re.compile(r"^REPORTING BUGS$")
RAW_HEAD = re.compile(r"^\.(SH|Sh)\s+\"?(AUTHORS?|REPORTING BUGS|COPYRIGHT|HISTORY|CONTRIBUTORS)\b",
                      re.M | re.I)


def man_section_text(path: str, head_re: re.Pattern) -> str | None:
    secs = sections(render(path))
    for i, (head, body) in enumerate(secs):
        if head_re.match(head) and len(body.strip()) >= 12:
            text = f"{head}\n{body}"
            # one section, or two adjacent wanted sections when they fit together
            if i + 1 < len(secs) and head_re.match(secs[i + 1][0]):
                both = f"{text}\n\n{secs[i + 1][0]}\n{secs[i + 1][1]}"
                if len(both) <= MAX_CHARS and len(text) < 200:
                    text = both
            text = cut(text)
            return text if len(text) >= 25 else None
    return None


def man_pages(dirs) -> list[str]:
    out = []
    for d in dirs:
        if not d.is_dir():
            continue
        for f in sorted(os.listdir(d)):
            p = str(d / f)
            if os.path.islink(p) or not os.path.isfile(p):
                continue
            out.append(p)
    return out


def man_author(own) -> list[dict]:
    recs = []
    # English: pages whose source has a wanted section; per package the page with smallest sha1
    bypkg = collections.defaultdict(list)
    for p in man_pages([MAN / d for d in ("man1", "man5", "man7", "man8")]):
        src = read_text(p)
        if src.startswith(".so ") or not RAW_HEAD.search(src):
            continue
        bypkg[own.get(p, "?")].append(p)
    fam_count = collections.Counter()
    for pkg in sorted(bypkg, key=sha):
        if len([r for r in recs]) >= N_MAN_AUTHOR_EN:
            break
        if fam_count[family(pkg)] >= MAX_PER_FAMILY:
            continue
        for p in sorted(bypkg[pkg], key=sha):
            text = man_section_text(p, AUTHOR_HEAD)
            if text:
                recs.append({"genre": "man-page-credits", "lang": "en", "text": text, "origin": p})
                fam_count[family(pkg)] += 1
                break
    # extra likely negatives: the REPORTING BUGS section alone, of packages not used above
    n_extra = 0
    for pkg in sorted(bypkg, key=lambda k: sha("bugs:" + k)):
        if n_extra >= N_REPORTING_BUGS or fam_count[family(pkg)]:
            continue
        for p in sorted(bypkg[pkg], key=sha):
            text = man_section_text(p, REPORT_HEAD)
            if text and text not in {r["text"] for r in recs}:
                recs.append({"genre": "man-page-credits", "lang": "en", "text": text, "origin": p})
                fam_count[family(pkg)] += 1
                n_extra += 1
                break
    # translated pages: one per language, pages in sha1 order, first with a wanted section
    for lang in N_MAN_AUTHOR_LANGS:
        pages = man_pages([MAN / lang / d for d in ("man1", "man5", "man7", "man8")])
        for p in sorted(pages, key=sha):
            if fam_count[family(own.get(p, "?"))]:   # not a package already used above
                continue
            text = man_section_text(p, FOREIGN_HEAD)
            if text:
                recs.append({"genre": "man-page-credits", "lang": lang[:2], "text": text,
                             "origin": p})
                fam_count[family(own.get(p, "?"))] += 1
                break
    return recs


# ---------------------------------------------------------------------------- upstream credits
CREDIT_NAME = re.compile(r"^(AUTHORS|THANKS|CREDITS|CONTRIBUTORS)(\.gz)?$")


def upstream_credits(own) -> list[dict]:
    files, seen = [], set()
    for d in sorted(os.listdir(DOC)):
        dd = DOC / d
        if not dd.is_dir():
            continue
        for f in sorted(os.listdir(dd)):
            if CREDIT_NAME.match(f) and os.path.isfile(dd / f):
                body = read_text(str(dd / f)).replace("\r\n", "\n").expandtabs(8)
                h = sha(body)
                if h in seen:      # identical copies shipped by several binary packages
                    continue
                seen.add(h)
                files.append((str(dd / f), body))
    recs = []
    for path, body in files:
        lines = body.split("\n")
        starts = [0]
        if len(body) > 4000:        # a second excerpt from the middle of long files
            mid = len(lines) // 2
            while mid < len(lines) - 1 and lines[mid - 1].strip() != "" and mid - len(lines) // 2 < 15:
                mid += 1
            starts.append(mid)
        for s in starts:
            while s < len(lines) and not lines[s].strip():
                s += 1
            chunk, size = [], 0
            for line in lines[s:]:
                if size + len(line) + 1 > MAX_CHARS:
                    break
                chunk.append(line)
                size += len(line) + 1
            text = "\n".join(chunk).rstrip()
            text = re.sub(r"\n{3,}", "\n\n", text)
            if len(text) >= 40:
                recs.append({"genre": "credits-file", "lang": "en", "text": text, "origin": path})
    # keep N_CREDITS, files in sha1 order of path so that the cut is not alphabetical
    order = sorted(range(len(recs)), key=lambda i: (sha(recs[i]["origin"]), i))
    keep = sorted(order[:N_CREDITS])
    return [recs[i] for i in keep]


# ---------------------------------------------------------------------------- man prose
PROSE_HEAD = re.compile(r"^(DESCRIPTION|OPTIONS)$")


def prose_ok(par: str) -> bool:
    if not (120 <= len(par) <= 450) or "\n" in par:
        return False
    if not re.match(r"^[A-Z][a-z]", par) or not par.rstrip().endswith("."):
        return False
    if re.search(r"[{}=;$|<>\\]|\s-{1,2}\w|^\S+\(\d", par):  # code, options, markup
        return False
    words = par.split()
    return len(words) >= 18


def man_prose(own) -> list[dict]:
    bypkg = collections.defaultdict(list)
    for p in man_pages([MAN / d for d in ("man1", "man5", "man7", "man8")]):
        bypkg[own.get(p, "?")].append(p)
    recs, fam_count = [], collections.Counter()
    for pkg in sorted(bypkg, key=lambda k: sha("prose:" + k)):
        if len(recs) >= N_PROSE:
            break
        if fam_count[family(pkg)] >= 1:
            continue
        for p in sorted(bypkg[pkg], key=sha)[:6]:
            src = read_text(p)
            if src.startswith(".so "):
                continue
            found = None
            for head, body in sections(render(p)):
                if not PROSE_HEAD.match(head):
                    continue
                for par in body.split("\n\n"):
                    par = par.strip()
                    if prose_ok(par):
                        found = par
                        break
                if found:
                    break
            if found:
                recs.append({"genre": "man-page-prose", "lang": "en", "text": found, "origin": p})
                fam_count[family(pkg)] += 1
                break
    return recs


# ---------------------------------------------------------------------------- drafts
EMAIL_RE = re.compile(r"[\w.+-]+(?:@| at | \[at\] )[\w-]+(?:\.[\w-]+)+")
ROLE_RE = re.compile(r"^(bugs?|bug-[\w.-]+|[\w.-]+-(request|devel|users|bugs|dev|announce|help)|"
                     r"support|info|help|noreply|no-reply|security|submit|webmaster|maintainers?|"
                     r"debian-[\w.-]+|[\w.-]+-(maint|maintainers|team))(@| at | \[at\] )", re.I)
_W = r"(?:[A-ZÀ-Þ][\w'’-]*\.?|[A-Z]\.)"
_P = r"(?:van|de|von|da|di|le|la|del|der|den|y|dos|du|v\.)"
# a person-like run of capitalised words at the start of a line (after "prog:" at most),
# followed by 2+ spaces, an e-mail bracket, a comma or the end of the line
LINE_NAME = re.compile(r"^[ \t]*(?:[\w.+-]+:[ \t]+)?(" + _W + r"(?:[ \t]+(?:" + _P + r"[ \t]+)?" + _W
                       + r"){0,4})(?=[ \t]{2,}\S|[ \t]*[<(⟨]|,[ \t]*<|[ \t]*$)", re.M)


def drafts(text: str) -> list[tuple]:
    spans = []
    for m in EMAIL_RE.finditer(text):
        if ROLE_RE.match(m.group(0)) or "lists." in m.group(0):
            continue
        spans.append((m.start(), m.end(), "EMAIL"))
    for m in LINE_NAME.finditer(text):
        s, e = m.start(1), m.end(1)
        rest = text[e:text.find("\n", e) if "\n" in text[e:] else len(text)]
        if m.group(1).isupper() and " " in m.group(1):   # an all-capitals heading
            continue
        one_word = " " not in m.group(1)
        if one_word and not EMAIL_RE.search(rest):
            continue
        if any(not (e <= a or s >= b) for a, b, _ in spans):
            continue
        spans.append((s, e, "NAME"))
    # "Name <email>" inside running text
    for m in re.finditer(r"(" + _W + r"(?:[ \t]+(?:" + _P + r"[ \t]+)?" + _W + r"){1,4})[ \t]*[<(⟨][\w.+-]+@", text):
        s, e = m.start(1), m.end(1)
        if not any(not (e <= a or s >= b) for a, b, _ in spans):
            spans.append((s, e, "NAME"))
    return spans


def find_all(text: str, value: str) -> list[tuple[int, int]]:
    """Occurrences of value not glued to letters/digits on either side."""
    out = []
    for m in re.finditer(re.escape(value), text):
        s, e = m.start(), m.end()
        if s > 0 and (text[s - 1].isalnum()) and value[0].isalnum():
            continue
        if e < len(text) and (text[e].isalnum()) and value[-1].isalnum():
            continue
        out.append((s, e))
    return out


def apply_corrections(rid: str, text: str, spans: list[tuple], corr: dict) -> list[tuple]:
    c = corr.get(rid)
    if c is None:
        return spans
    if "set" in c:
        spans = []
        adds = c["set"]
    else:
        drop = set(c.get("drop", []))
        spans = [s for s in spans if text[s[0]:s[1]] not in drop]
        adds = c.get("add", [])
    # longer values first; an occurrence inside a longer span already there is left alone
    for label, value in sorted(adds, key=lambda a: -len(a[1])):
        occ = find_all(text, value)
        if not occ:
            raise ValueError(f"{rid}: correction value {value!r} not in text")
        for s, e in occ:
            if any(a <= s and e <= b and (b - a) > (e - s) for a, b, _ in spans):
                continue
            spans = [x for x in spans if x[1] <= s or x[0] >= e]   # the correction wins
            spans.append((s, e, label))
    return spans




def main() -> None:
    out_path = Path(sys.argv[sys.argv.index("--out") + 1]) if "--out" in sys.argv else OUT
    own = owners()
    corr = json.loads(CORR.read_text(encoding="utf-8")) if CORR.exists() else {}
    corr = {k: v for k, v in corr.items() if not k.startswith("_")}
    groups = [("man-author", man_author(own)), ("upstream-credits", upstream_credits(own)),
              ("man-prose", man_prose(own))]
    out, draft_out = [], []
    for source, recs in groups:
        for i, r in enumerate(recs, 1):
            rid = f"{source}-{i:03d}"
            d = sorted(set(drafts(r["text"])))
            draft_out.append({"id": rid, "text": r["text"], "origin": r["origin"],
                              "spans": [[s, e, l, r["text"][s:e]] for s, e, l in d]})
            final = sorted(set(apply_corrections(rid, r["text"], d, corr)))
            out.append({"id": rid, "source": source, "genre": r["genre"], "lang": r["lang"],
                        "text": r["text"],
                        "spans": [{"start": s, "end": e, "label": l, "value": r["text"][s:e]}
                                  for s, e, l in final],
                        "origin": r["origin"]})
    unknown = set(corr) - {r["id"] for r in out}
    assert not unknown, f"corrections for unknown ids: {sorted(unknown)}"
    validate(out)
    with open(out_path, "w", encoding="utf-8") as fh:
        for r in out:
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")
    if "--drafts" in sys.argv:
        with open(DRAFTS, "w", encoding="utf-8") as fh:
            for r in draft_out:
                fh.write(json.dumps(r, ensure_ascii=False) + "\n")
    counts = collections.Counter(r["source"] for r in out)
    labels = collections.Counter(sp["label"] for r in out for sp in r["spans"])
    pos = collections.Counter(r["source"] for r in out if r["spans"])
    print(f"wrote {len(out)} texts to {out_path}")
    for s in counts:
        print(f"  {s}: {counts[s]} texts, {pos[s]} with PII")
    print("  labels:", dict(sorted(labels.items())))
    print("validation OK")


if __name__ == "__main__":
    main()
