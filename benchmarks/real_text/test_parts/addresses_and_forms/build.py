"""Build the addresses-and-forms part of the second real-text test set.

    python build.py [--mirrors /work/.mirror] [--out part.jsonl] [--dump] [--nolabels]

Texts in which street addresses, phone numbers, account/ID numbers and names appear the way
people write them on envelopes, forms, statements, invoices and CV headers, plus business
addresses, invoice numbers, VAT numbers and bank codes that are NOT personal data. All are
third-party files in public git repositories, read from bare mirrors at pinned commits (REPOS).

Sources (the `source` field):
  address-format-test  the expected output of the first street-level test case of OpenCage's
                       address-formatting country test files (formatted postal address lines of
                       many countries; every other candidate, see select_opencage()).
  address-parser-test  the input strings of libpostal's parser tests that have a house number
                       or PO box (see select_libpostal()), scrubadub_address's GB test
                       sentences, and pyap's README example text.
  bank-statement       SWIFT MT940 statement test files of the mt940 parser (WoLpH/mt940, which
                       bundles fixtures of several bank-statement parsers).
  invoice-sample       invoice texts from invoice parsers' / generators' tests and samples.
  cv-template          the contact headers of CV / cover-letter templates and of the JSON Resume
                       sample.

Text preparation (deterministic): Latin-1 fallback where a file is not UTF-8; CRLF -> LF;
control bytes (SWIFT SOH/ETX framing) removed; trailing spaces removed per line, then cut to
<= 600 characters at a line boundary (cut_lines). Markup is removed where a text is a
template source: HTML tags (prep_html), LaTeX header macros (prep_latex), YAML list dashes
(prep_yaml_doc); JSON keeps its syntax (it is the form as written). Labels are all by hand:
corrections.json holds, per record id, the (value, label) pairs ("add"); each value is then
marked at EVERY occurrence (marking.mark_all). The address-test texts take their `lang` from
corrections.json too (the language of the address), the others from FILES.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
import marking  # noqa: E402
from marking import MAX_CHARS, corrected, mark_all, validate  # noqa: E402

# repo -> (commit, licence)
REPOS = {
    "OpenCageData/address-formatting": ("28c47f9daeaeb55213c439ec7c31c247bfe76321", "MIT"),
    "openvenues/libpostal": ("4c030d8ff2fcf59c26510f68823c28a2346034d4", "MIT"),
    "LeapBeyond/scrubadub_address": ("d1d60063dc72af5b3c2c5dba65734ad429aee0f5", "Apache-2.0"),
    "WoLpH/mt940": ("d3f8b44f26b220f5bf97bf448f8960efe4278d3f", "BSD-3-Clause"),
    "invoice-x/invoice2data": ("bd2fcceb867882047173dbd66a9500f47634a0cd", "MIT"),
    "mrzool/invoice-boilerplate": ("8ef13f71b4d63dc29ebb67915fecb35fa3df9be2", "GPL-2.0"),
    "sparksuite/simple-html-invoice-template": ("7d74fe34c862b7712f1a23a3f12147a4a8bd53e1", "MIT"),
    "moderncv/moderncv": ("da4118b07ac932b8f83af29bce9fc4ebdef2f7e7", "LPPL-1.3c"),
    "posquit0/Awesome-CV": ("8b850b477803a929a6dd74a74e3d5ab6b735d869", "LPPL-1.3c"),
    "jsonresume/resume-schema": ("b25e3f4bbafd349c2c5bbaa62602c03c228762db", "MIT"),
    "vladimarius/pyap": ("34e33739be46e084becae73980d945af068ae699", "MIT"),
}

GENRE = {
    "address-format-test": "postal address",
    "address-parser-test": "address line",
    "bank-statement": "bank statement",
    "invoice-sample": "invoice",
    "cv-template": "CV header",
}

MT = "mt940_tests/"
# (source, repo, path, kind, options); the two address-test sources are appended by rule
# (select_opencage / select_libpostal / SCRUBADUB below). Order = id order within a source.
FILES = [
    # ---- bank-statement: every MT940 fixture of >= 200 bytes with a :86: or :NS: line, except
    # those where any occurrence of personal data is glued to a field code (no span can mark it;
    # see NOTES.md)
    ("bank-statement", "WoLpH/mt940", MT + "betterplace/sepa_mt9401.sta", "raw", {"lang": "de"}),
    ("bank-statement", "WoLpH/mt940", MT + "betterplace/with_binary_character.sta", "raw", {"lang": "de"}),
    ("bank-statement", "WoLpH/mt940", MT + "cmxl/mt940.sta", "raw", {"lang": "de"}),
    ("bank-statement", "WoLpH/mt940", MT + "jejik/abnamro.sta", "raw", {"lang": "nl"}),
    ("bank-statement", "WoLpH/mt940", MT + "jejik/ing.sta", "raw", {"lang": "nl"}),
    ("bank-statement", "WoLpH/mt940", MT + "jejik/knab.sta", "raw", {"lang": "nl"}),
    ("bank-statement", "WoLpH/mt940", MT + "jejik/postfinance.sta", "raw", {"lang": "de"}),
    ("bank-statement", "WoLpH/mt940", MT + "jejik/rabobank-iban.sta", "raw", {"lang": "nl"}),
    ("bank-statement", "WoLpH/mt940", MT + "mBank/mt940.sta", "raw", {"lang": "pl"}),
    ("bank-statement", "WoLpH/mt940", MT + "self-provided/details_60-63.sta", "raw", {"lang": "de"}),
    ("bank-statement", "WoLpH/mt940", MT + "self-provided/gv_codes.sta", "raw", {"lang": "de"}),
    ("bank-statement", "WoLpH/mt940", MT + "self-provided/malformed_details.sta", "raw", {"lang": "de"}),
    ("bank-statement", "WoLpH/mt940", MT + "self-provided/raiffeisen-cmi.sta", "raw", {"lang": "de"}),
    ("bank-statement", "WoLpH/mt940", MT + "self-provided/raphaelm.sta", "raw", {"lang": "de"}),
    ("bank-statement", "WoLpH/mt940", MT + "self-provided/transaction_details_wrapped.sta", "raw", {"lang": "de"}),
    ("bank-statement", "WoLpH/mt940", MT + "self-provided/wrapped_timestamp.sta", "raw", {"lang": "de"}),
    # (two read late, appended so the ids above stay put)
    ("bank-statement", "WoLpH/mt940", MT + "self-provided/mt942.sta", "raw", {}),
    ("bank-statement", "WoLpH/mt940", MT + "self-provided/whitespace.sta", "raw", {"lang": "de"}),
    # ---- invoice-sample
    ("invoice-sample", "invoice-x/invoice2data", "tests/compare/Orlen.txt", "raw", {"lang": "pl", "squeeze": True}),
    ("invoice-sample", "invoice-x/invoice2data", "tests/custom/basic.txt", "raw", {}),
    ("invoice-sample", "invoice-x/invoice2data", "tests/custom/lines-basic.txt", "raw", {}),
    ("invoice-sample", "invoice-x/invoice2data", "tests/custom/table-groups.txt", "raw", {"squeeze": True}),
    ("invoice-sample", "mrzool/invoice-boilerplate", "details.yml", "yaml_doc", {}),
    ("invoice-sample", "sparksuite/simple-html-invoice-template", "invoice.html", "html", {}),
    # ---- address-parser-test (README example)
    ("address-parser-test", "vladimarius/pyap", "README.rst", "between",
     {"start": 'test_address = """', "end": '"""'}),
    # ---- cv-template
    ("cv-template", "moderncv/moderncv", "template.tex", "latex", {}),
    ("cv-template", "posquit0/Awesome-CV", "examples/coverletter.tex", "latex", {}),
    ("cv-template", "jsonresume/resume-schema", "sample.resume.json", "json", {"drop_keys": ["$schema", "image", "summary"]}),
]

SCRUBADUB = ("LeapBeyond/scrubadub_address", "tests/test_detector_address.py", "test_gb")


# ------------------------------------------------------------------------------ reading
def git_show(mirrors: Path, repo: str, path: str) -> str:
    return marking.git_show(mirrors, repo, REPOS[repo][0], path)


def git_ls(mirrors: Path, repo: str, path: str) -> list[str]:
    out = subprocess.run(["git", f"--git-dir={marking.git_dir(mirrors, repo)}", "ls-tree", "-r",
                          "--name-only", REPOS[repo][0], path], check=True,
                         capture_output=True).stdout.decode("utf-8")
    return sorted(out.split())


def cut_lines(lines: list[str]) -> str:
    """Longest prefix of whole lines <= MAX_CHARS."""
    out: list[str] = []
    for ln in lines:
        if len("\n".join(out + [ln])) > MAX_CHARS:
            break
        out.append(ln)
    text = "\n".join(out).strip("\n").rstrip()
    assert 0 < len(text) <= MAX_CHARS
    return text


# ------------------------------------------------------------------------------ preparing
def prep_raw(raw: str, squeeze: bool = False) -> str:
    raw = re.sub(r"[\x00-\x08\x0b-\x1f\x7f]", "", raw)  # SWIFT framing bytes (SOH/ETX)
    lines = [ln.rstrip() for ln in raw.split("\n")]
    if squeeze:  # column-aligned text: runs of 3+ spaces -> 3 spaces; no more than 1 empty line
        lines = [re.sub(r" {3,}", "   ", ln) for ln in lines]
        lines = [ln for i, ln in enumerate(lines) if ln or (i and lines[i - 1])]
    return cut_lines(lines)


def prep_yaml_doc(raw: str, body: bool = False) -> str:
    """A Markdown/YAML front-matter document: comment lines, and the settings block from the
    first comment line that follows the content up to the closing '---', are dropped; list
    dashes removed; '---' fences dropped; with body=True the Markdown body after the closing
    fence follows (else it is dropped)."""
    lines = raw.split("\n")
    fences = [i for i, ln in enumerate(lines) if ln.strip() == "---"]
    head, rest = lines[fences[0] + 1:fences[1]], lines[fences[1] + 1:]
    out = []
    for ln in head:
        if ln.lstrip().startswith("#"):
            if out:
                break
            continue
        out.append(re.sub(r"^(\s*)- ", r"\1", ln.rstrip()))
    if body:
        out += [""] + [ln.rstrip() for ln in rest]
    return cut_lines(out)


def prep_between(raw: str, start: str, end: str) -> str:
    """The lines after the first line containing `start`, up to the next line containing
    `end`, dedented by their common indentation."""
    lines = raw.split("\n")
    i = next(n for n, ln in enumerate(lines) if start in ln)
    j = next(n for n in range(i + 1, len(lines)) if end in lines[n])
    block = [ln.rstrip() for ln in lines[i + 1:j] if ln.strip()]
    ind = min(len(ln) - len(ln.lstrip()) for ln in block)
    return cut_lines([ln[ind:] for ln in block])


def prep_html(raw: str) -> str:
    body = raw[raw.index("<body"):]
    body = re.sub(r"<br\s*/?>", "\n", body)
    body = re.sub(r"</(td|tr|p|div|h\d)>", "\n", body)
    body = re.sub(r"<[^>]+>", "", body)
    lines = [re.sub(r"\s+", " ", ln).strip() for ln in body.split("\n")]
    return cut_lines([ln for ln in lines if ln])


LATEX_CMDS = ("name", "position", "title", "address", "phone", "mobile", "email", "homepage",
              "social", "github", "linkedin", "extrainfo", "recipient", "letterdate",
              "lettertitle", "letteropening")


LATEX_LABELLED = ("github", "linkedin")  # icon-only macros: their name stands in for the icon


def latex_text(s: str) -> str:
    s = s.replace("{\\enskip\\cdotp\\enskip}", " · ").replace("\\\\", "\n")
    s = s.replace("~", " ").replace("\\_", "_").replace("\\#", "#").replace("\\&", "&")
    s = s.replace("``", '"')
    s = re.sub(r"\\today", "", s)
    return s.strip()


def prep_latex(raw: str) -> str:
    """The contact-header macros of a LaTeX CV / letter (LATEX_CMDS, in file order), one line
    per macro: '[opt: ]arg1 arg2 ...' (github/linkedin get 'github: ' as a stand-in for their
    icon; 'name' joins its arguments with a space, the others
    with a new line)."""
    out = []
    for ln in raw.split("\n"):
        ln = re.sub(r"(?<!\\)%.*$", "", ln).strip()
        m = re.match(r"^\\(\w+)(?:\[([^\]]*)\])?((?:\{.*\})+)\s*$", ln)
        if not m or m.group(1) not in LATEX_CMDS:
            continue
        args, depth, cur = [], 0, ""
        for ch in m.group(3):
            if ch == "{":
                depth += 1
                if depth == 1:
                    cur = ""
                    continue
            if ch == "}":
                depth -= 1
                if depth == 0:
                    args.append(cur)
                    continue
            cur += ch
        args = [latex_text(a) for a in args if latex_text(a)]
        if not args:
            continue
        val = (" " if m.group(1) == "name" else "\n").join(args)
        label = m.group(2) or (m.group(1) if m.group(1) in LATEX_LABELLED else "")
        out.append((f"{label}: " if label else "") + val)
    return cut_lines("\n".join(out).split("\n"))


def prep_json(raw: str, drop_keys=()) -> str:
    lines = [ln.rstrip() for ln in raw.split("\n")
             if not any(ln.strip().startswith(f'"{k}":') for k in drop_keys)]
    return cut_lines(lines)


# ------------------------------------------------------------------------- rule selections
ROADS = {"road", "pedestrian", "footway", "path", "street", "residential", "cycleway"}


def select_opencage(mirrors: Path) -> list[tuple[str, str, str]]:
    """(path, anchor, text): per country test file (sorted), the first test case whose
    components have a house number and a road; of these candidates every other one (1st, 3rd,
    ...), at most 45. The text is the case's `expected` output."""
    repo = "OpenCageData/address-formatting"
    cands = []
    for path in git_ls(mirrors, repo, "testcases/countries/"):
        docs = [d for d in yaml.safe_load_all(git_show(mirrors, repo, path)) if d]
        for i, d in enumerate(docs):
            c = d.get("components", {})
            if ("house_number" in c or "housenumber" in c) and ROADS & set(c):
                cands.append((path, f"case{i}", cut_lines(d["expected"].rstrip("\n").split("\n"))))
                break
    return cands[::2][:45]


def select_libpostal(mirrors: Path) -> list[tuple[str, str, str]]:
    """(path, anchor, text): the input strings of test/test_parser.c whose expected components
    include house_number or po_box, in file order; an input whose (house_number, road), letters and
    digits only, repeats an earlier kept input's is a near-duplicate and dropped; of the rest every other
    one (1st, 3rd, ...)."""
    repo, path = "openvenues/libpostal", "test/test_parser.c"
    src = git_show(mirrors, repo, path)
    kept, seen = [], set()
    for n, block in enumerate(re.findall(r"CHECK_CALL\(test_parse_result_equals\(\s*(.*?)\)\s*\);",
                                         src, re.S)):
        block = re.sub(r"/\*.*?\*/", "", re.sub(r"//[^\n]*", "", block), flags=re.S).strip()
        m = re.match(r'((?:"(?:[^"\\]|\\.)*"\s*)+),', block, re.S)
        text = "".join(re.findall(r'"((?:[^"\\]|\\.)*)"', m.group(1)))
        text = text.replace("\\n", "\n").replace('\\"', '"').replace("&amp;", "&")
        comps = dict(re.findall(r'\{"(\w+)", "((?:[^"\\]|\\.)*)"\}', block)[::-1])
        if not ({"house_number", "po_box"} & set(comps)):
            continue
        key = tuple(re.sub(r"\W", "", v) for v in (comps.get("house_number", comps.get("po_box")),
                                                    comps.get("road", "")))
        if key in seen:
            continue
        seen.add(key)
        kept.append((path, f"call{n}", text))
    return kept[::2]


def select_scrubadub(mirrors: Path) -> list[tuple[str, str, str]]:
    """Every positive GB address of scrubadub_address's test_gb, in the test's own frame
    sentence 'this is a {} test string'."""
    repo, path, func = SCRUBADUB
    src = git_show(mirrors, repo, path)
    body = src[src.index(f"def {func}("):]
    frame = re.search(r"test_str = '([^']*)'", body).group(1)
    out = []
    for i, (addr, ok) in enumerate(re.findall(r'\("((?:[^"\\]|\\.)*)", (True|False)\)', body)):
        if ok == "True":
            out.append((path, f"{func}.{i}", frame.format(addr.replace("\\n", "\n"))))
    return out


# -------------------------------------------------------------------------------- build
def items(mirrors: Path):
    """(source, repo, path, anchor, lang, text) in id order."""
    for path, anchor, text in select_opencage(mirrors):
        yield "address-format-test", "OpenCageData/address-formatting", path, anchor, None, text
    for path, anchor, text in select_libpostal(mirrors):
        yield "address-parser-test", "openvenues/libpostal", path, anchor, None, text
    for path, anchor, text in select_scrubadub(mirrors):
        yield "address-parser-test", SCRUBADUB[0], path, anchor, "en", text
    for source, repo, path, kind, opt in FILES:
        raw = git_show(mirrors, repo, path)
        if kind == "raw":
            text = prep_raw(raw, opt.get("squeeze", False))
        elif kind == "yaml_doc":
            text = prep_yaml_doc(raw, opt.get("body", False))
        elif kind == "between":
            text = prep_between(raw, opt["start"], opt["end"])
        elif kind == "html":
            text = prep_html(raw)
        elif kind == "latex":
            text = prep_latex(raw)
        else:
            text = prep_json(raw, opt.get("drop_keys", ()))
        yield source, repo, path, None, opt.get("lang", "en"), text


def build(mirrors: Path, labels: bool = True) -> list[dict]:
    corr = json.loads((HERE / "corrections.json").read_text(encoding="utf-8")) if labels else {}
    out, counters, seen = [], {}, set()
    for source, repo, path, anchor, lang, text in items(mirrors):
        if text in seen:
            raise ValueError(f"duplicate text from {repo}:{path}")
        seen.add(text)
        counters[source] = counters.get(source, 0) + 1
        rid = f"{source}-{counters[source]:03d}"
        origin = f"github:{repo}@{REPOS[repo][0]}:{path}" + (f"#{anchor}" if anchor else "")
        c = corr.get(rid, {})
        spans = mark_all(text, corrected(rid, origin, [], corr)) if labels else []
        out.append({"id": rid, "source": source, "genre": GENRE[source],
                    "lang": lang or c.get("lang", "en"), "text": text, "spans": spans,
                    "origin": origin})
    validate(out)
    return out


if __name__ == "__main__":
    sys.exit(marking.part_command(build, HERE))
