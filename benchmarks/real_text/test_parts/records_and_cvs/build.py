"""Build the records-and-CVs part of the third real-text test set.

    python build.py [--mirrors /work/.mirror] [--out part.jsonl] [--dump] [--nolabels]

Records and documents about people: HL7 v2 messages from parser test suites (patient,
next-of-kin, guarantor and clinician segments among lab results and codes), clinical text
samples of two Dutch de-identification tools, and CV / resume templates' sample documents
(Markdown and LaTeX sources, cut into sections). All are third-party files in public git
repositories, read from bare mirrors at pinned commits (REPOS).

Sources (the `source` field):
  hl7-message    every .hl7 test message of node-hl7-complete (valid and invalid), hl7-parser's
                 test message and python-hl7's `sample_hl7`; a file whose PID patient name
                 repeats an earlier kept file's is a near-duplicate and is left out (see
                 hl7_items()). Each message is cut into up to 4 consecutive excerpts of whole
                 segments (chunks()).
  clinical-note  the example notes of nedap/deidentify's dummy corpus and surrogate tests, and
                 the example text of deduce's README.
  cv             CV / resume sample documents, cut into sections (md_sections / tex_sections),
                 each section into up to 3 excerpts.

Text preparation (deterministic): CRLF / CR -> LF; trailing spaces removed per line; runs of
empty lines collapsed to one; excerpts are greedy runs of whole lines of <= 600 characters (a
single longer line is cut at its last '|' or space before the limit, and the rest continues as
the next line); excerpts under 30 characters are dropped. Texts identical to an earlier text are dropped. Labels are all by hand:
corrections.json holds, per record id, the (value, label) pairs ("add"); each value is marked
at EVERY occurrence (marking.mark_all).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
import marking  # noqa: E402
from marking import MAX_CHARS  # noqa: E402

# repo -> (commit, licence)
REPOS = {
    "MatthewVita/node-hl7-complete": ("8932730ad987b8c8fd0c7d6e1031e152c7ceb5d2", "MIT"),
    "mps-gmbh/hl7-parser": ("d3abc3a2176b8d6ab73ceb0e8087d73fa62985b0", "BSD-3-Clause"),
    "johnpaulett/python-hl7": ("e41436ac6bee0d14a90b0a7035f0160819c5ae2e", "BSD-3-Clause"),
    "nedap/deidentify": ("258b90514069ebc9a87ea0f8243618cb66211341", "MIT"),
    "vmenger/deduce": ("8ba9af648679237bf3565afdd3ce6a187895464e", "GPL-3.0"),
    "mszep/pandoc_resume": ("b5abc55e0cbe54b132069c9c487c81d6f10b8679", "MIT"),
    "there4/markdown-resume": ("317f33e33c584be56c6c48fcf2deb211a7278075", "MIT"),
    "billryan/resume": ("eadc3955cf006254dc8f2419e971fbe3f5bab413", "MIT"),
    "jakegut/resume": ("3e64a933141a7cda3a328f0743f73a201628a4ba", "MIT"),
    "sb2nov/resume": ("29293817f92cc4febf6fa14a0f3edf98c01c4db2", "MIT"),
    "jankapunkt/latexcv": ("ee0a883af473f166764048c5243b58404bcb1e06", "MIT"),
}

GENRE = {"hl7-message": "HL7 v2 message", "clinical-note": "clinical note", "cv": "CV / resume"}

HL7_MAX_EXCERPTS = 4
CV_MAX_EXCERPTS = 3
MIN_CHARS = 30  # shorter excerpts (a lone closing macro, a one-line tail) are left out

NODE_HL7 = "MatthewVita/node-hl7-complete"
HL7_FILES = [("mps-gmbh/hl7-parser", "tests/messages/OBR.hl7", "de")]
PYHL7 = ("johnpaulett/python-hl7", "tests/samples.py", "sample_hl7")

CLINICAL = [  # (repo, path, kind, lang)
    ("nedap/deidentify", "data/corpus/dummy/train/example-1.txt", "raw", "nl"),
    ("nedap/deidentify", "data/corpus/dummy/test/example-2.txt", "raw", "nl"),
    ("nedap/deidentify", "data/corpus/dummy/dev/example-3.txt", "raw", "nl"),
    ("nedap/deidentify", "tests/surrogates/data/original/example-1.txt", "raw", "nl"),
    ("nedap/deidentify", "tests/surrogates/data/original/example-2.txt", "raw", "nl"),
    ("nedap/deidentify", "tests/surrogates/data/original/example-3.txt", "raw", "nl"),
    ("vmenger/deduce", "README.md", "py_text", "nl"),
]

CVS = [  # (repo, path, kind, lang)
    ("mszep/pandoc_resume", "markdown/resume.md", "md", "en"),
    ("there4/markdown-resume", "examples/source/sample.md", "md", "en"),
    ("there4/markdown-resume", "examples/source/zhsample.md", "md", "zh"),
    ("billryan/resume", "resume.tex", "tex", "en"),
    ("jakegut/resume", "resume.tex", "tex", "en"),
    ("sb2nov/resume", "sourabh_bajaj_resume.tex", "tex", "en"),
    ("jankapunkt/latexcv", "classic/main.tex", "tex", "en"),
    ("jankapunkt/latexcv", "rows/main.tex", "tex", "en"),
    ("jankapunkt/latexcv", "infographics2/en/main.tex", "tex", "en"),
    ("jankapunkt/latexcv", "infographics2/fr/main.tex", "tex", "fr"),
]


# ------------------------------------------------------------------------------ reading
def git_show(mirrors: Path, repo: str, path: str) -> str:
    return marking.git_show(mirrors, repo, REPOS[repo][0], path)


def git_ls(mirrors: Path, repo: str, path: str) -> list[str]:
    out = subprocess.run(["git", f"--git-dir={marking.git_dir(mirrors, repo)}", "ls-tree", "-r",
                          "--name-only", REPOS[repo][0], path], check=True,
                         capture_output=True).stdout.decode("utf-8")
    return sorted(out.split())


# ------------------------------------------------------------------------------ preparing
def tidy(lines: list[str]) -> list[str]:
    """Trailing spaces off; runs of empty lines -> one; no empty lines at either end."""
    out: list[str] = []
    for ln in lines:
        ln = ln.rstrip()
        if not ln and (not out or not out[-1]):
            continue
        out.append(ln)
    while out and not out[-1]:
        out.pop()
    return out


def split_long(line: str) -> list[str]:
    """A line longer than MAX_CHARS, cut at its last '|' (kept) or space before the limit."""
    parts = []
    while len(line) > MAX_CHARS:
        head = line[:MAX_CHARS]
        cut = head.rfind("|") + 1 or head.rfind(" ") + 1 or MAX_CHARS
        parts.append(line[:cut].rstrip())
        line = line[cut:].lstrip(" ")
    return parts + [line]


def chunks(lines: list[str], max_n: int) -> list[str]:
    """Greedy runs of whole lines, each <= MAX_CHARS, the first max_n of them."""
    flat = [p for ln in tidy(lines) for p in split_long(ln)]
    out, cur = [], []
    for ln in flat:
        if cur and len("\n".join(cur + [ln])) > MAX_CHARS:
            out.append(cur)
            cur = []
        if not cur and not ln:
            continue
        cur.append(ln)
    if cur:
        out.append(cur)
    texts = ["\n".join(tidy(c)) for c in out]
    return [t for t in texts if len(t.strip()) >= MIN_CHARS][:max_n]


def hl7_lines(raw: str) -> list[str]:
    return raw.split("\n")


def pid_name(raw: str) -> str | None:
    """PID-5 (patient name) of the first PID segment, or None."""
    for seg in re.split(r"[\n]", raw):
        if seg.startswith("PID|"):
            f = seg.split("|")
            return f[5].lower() if len(f) > 5 else None
    return None


def py_string(src: str, start: str) -> str:
    """A Python string expression after `start` (a list joined with "\\r", or parenthesised
    adjacent literals), evaluated literally."""
    i = src.index(start) + len(start)
    depth, j = 0, i
    while True:
        ch = src[j]
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
            if depth == 0:
                break
        j += 1
    expr = src[i:j + 1].strip()
    import ast
    node = ast.parse(expr, mode="eval").body
    if isinstance(node, ast.Call):  # "\r".join([...])
        sep = ast.literal_eval(node.func.value)
        return sep.join(ast.literal_eval(node.args[0]))
    return ast.literal_eval(node)


def md_sections(raw: str) -> list[list[str]]:
    """Markdown CV: sections split at horizontal rules (a line of only '-' or '*', 3+, after an
    empty line or at the start; the rule itself dropped) and before setext headings (a text
    line followed by a line of only '-' or '=')."""
    lines = raw.split("\n")
    secs: list[list[str]] = [[]]
    for n, ln in enumerate(lines):
        prev = lines[n - 1].strip() if n else ""
        nxt = lines[n + 1].strip() if n + 1 < len(lines) else ""
        if re.fullmatch(r"[-*]{3,}", ln.strip()) and not prev:
            secs.append([])
            continue
        if ln.strip() and re.fullmatch(r"[-=]{3,}", nxt) and any(x.strip() for x in secs[-1]):
            secs.append([])
        secs[-1].append(ln)
    return [s for s in secs if any(x.strip() for x in s)]


def tex_sections(raw: str) -> list[list[str]]:
    """LaTeX CV: the document body (between \\begin{document} and \\end{document}), comment
    lines and trailing comments dropped, split before each \\section line."""
    body = raw[raw.index("\\begin{document}") + len("\\begin{document}"):raw.index("\\end{document}")]
    secs: list[list[str]] = [[]]
    for ln in body.split("\n"):
        if ln.lstrip().startswith("%"):
            continue
        ln = re.sub(r"(?<!\\)%.*$", "", ln)
        if ln.lstrip().startswith("\\section"):
            secs.append([])
        secs[-1].append(ln)
    return [s for s in secs if any(x.strip() for x in s)]


# -------------------------------------------------------------------------------- items
def hl7_items(mirrors: Path):
    files = [(NODE_HL7, p, "en") for p in git_ls(mirrors, NODE_HL7, "test/functional/test-data/")
             if p.endswith(".hl7")] + HL7_FILES
    seen_names = set()
    for repo, path, lang in files:
        raw = git_show(mirrors, repo, path)
        name = pid_name(raw)
        if name is not None:
            if name in seen_names:
                continue
            seen_names.add(name)
        for k, text in enumerate(chunks(hl7_lines(raw), HL7_MAX_EXCERPTS)):
            yield "hl7-message", repo, path, f"part{k + 1}", lang, text
    repo, path, var = PYHL7
    raw = py_string(git_show(mirrors, repo, path), f"{var} = ").replace("\r", "\n")
    for k, text in enumerate(chunks(raw.split("\n"), HL7_MAX_EXCERPTS)):
        yield "hl7-message", repo, path, f"{var}.part{k + 1}", "en", text


def clinical_items(mirrors: Path):
    for repo, path, kind, lang in CLINICAL:
        raw = git_show(mirrors, repo, path)
        if kind == "py_text":
            yield "clinical-note", repo, path, "text", lang, py_string(raw, "text = ")
            continue
        for k, text in enumerate(chunks(raw.split("\n"), 2)):
            yield "clinical-note", repo, path, f"part{k + 1}", lang, text


def cv_items(mirrors: Path):
    for repo, path, kind, lang in CVS:
        raw = git_show(mirrors, repo, path)
        secs = md_sections(raw) if kind == "md" else tex_sections(raw)
        for s, sec in enumerate(secs):
            for k, text in enumerate(chunks(sec, CV_MAX_EXCERPTS)):
                yield "cv", repo, path, f"sec{s + 1}.part{k + 1}", lang, text


def items(mirrors: Path):
    yield from hl7_items(mirrors)
    yield from clinical_items(mirrors)
    yield from cv_items(mirrors)


# -------------------------------------------------------------------------------- build
def build(mirrors: Path, labels: bool = True) -> list[dict]:
    corrections = json.loads((HERE / "corrections.json").read_text(encoding="utf-8")) if labels else None
    return marking.numbered_records(items(mirrors), REPOS, GENRE, corrections)


if __name__ == "__main__":
    sys.exit(marking.part_command(build, HERE))
