"""Build the detector_fixtures part of the second real-text test set.

    python build.py [--mirrors /work/.mirror] [--out part.jsonl] [--dump]

Sources: the sentences that entity/PII-recognition, DLP and phone-number libraries (other than
Presidio) feed their detectors in tests, specs and documentation, read from bare mirrors at
pinned commits (see REPOS and NOTES.md):
  recognizer-spec     microsoft/Recognizers-Text Specs/Sequence/<Language>/<Model>.json "Input"
                      fields, chosen by the fixed rule in `recognizer_selection` (the spec's
                      "Results" are ignored).
  pii-tool-test       scrubadub test docstrings ("BEFORE:" lines), test strings and doc examples;
                      CommonRegex README and test strings.
  dlp-sample          Google Cloud DLP code samples (python-docs-samples and nodejs-docs-samples
                      dlp/): the strings the snippets and their tests inspect or de-identify.
  phone-matcher-test  python-phonenumbers' PhoneNumberMatcher tests: literal sentences, and the
                      test's context pairs (leading text + number + trailing text) filled with
                      the numbers of its doTestFindInContext calls, in file order.

Text preparation: a text is cut from the pinned file by anchors (`span`: from the first
occurrence of `start` to the next `end`), joined from double-quoted literals (`concat`), taken
whole (`file`), or read from the spec JSON (`rt`). Nothing else is changed, except `dedent`
(README code blocks: each line stripped of its leading/trailing blanks).

Labels: every label is by hand, in corrections.json `add` (keyed by record id, with the origin it
was written for); each value is marked at EVERY occurrence (marking.mark_all).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
import marking  # noqa: E402
from marking import MAX_CHARS, corrected, dump, mark_all, validate, write_part  # noqa: E402

# repo -> (commit, licence)
REPOS = {
    "microsoft/Recognizers-Text": ("90e968ea44dc8fda3f2e1c3e4b20aa233817488d", "MIT"),
    "LeapBeyond/scrubadub": ("53772cbef417da290d25c95373031f786ab3b5c6", "Apache-2.0"),
    "madisonmay/CommonRegex": ("2425abdb79c8992b8b655c27e1fb195cc54457ab", "MIT"),
    "GoogleCloudPlatform/python-docs-samples": ("683bf45f8f608cf0248d485d2c60de22e356b2db", "Apache-2.0"),
    "GoogleCloudPlatform/nodejs-docs-samples": ("0f9be64252359b71dc60c7a0b468f5540f5c3e5f", "Apache-2.0"),
    "daviddrysdale/python-phonenumbers": ("4920fee9ffce2733141b1d2b962020f47494ef93", "Apache-2.0"),
}


def git_show(mirrors: Path, repo: str, path: str) -> str:
    return marking.git_show(mirrors, repo, REPOS[repo][0], path)


# ------------------------------------------------------------------ recognizer-spec selection
RT = "microsoft/Recognizers-Text"
# (spec file under Specs/Sequence/, how many texts to take from it), in this order
RT_ALLOC = [("English/PhoneNumberModel.json", 14), ("English/EmailModel.json", 5),
            ("English/URLModel.json", 5), ("English/MentionModel.json", 4),
            ("English/IpAddressModel.json", 3), ("English/HashtagModel.json", 2),
            ("English/GUIDModel.json", 1), ("Chinese/PhoneNumberModel.json", 5),
            ("Chinese/URLModel.json", 2), ("Portuguese/PhoneNumberModel.json", 2),
            ("Portuguese/IpAddressModel.json", 1), ("Hindi/PhoneNumberModel.json", 1),
            ("Japanese/PhoneNumberModel.json", 1)]
RT_LANG = {"English": "en", "Chinese": "zh", "Portuguese": "pt", "Hindi": "hi", "Japanese": "ja"}
# the "My phone number is <number>." template and its translations: one per file
RT_TEMPLATE = ("my phone number is", "我的电话号是", "meu telefone é", "मेरा फोन नंबर")
# picked by the rule but left out: a value to label is glued to a CJK letter, so the shared
# word-boundary marker (marking.mark_all) cannot mark it; no replacement is drawn
RT_SKIP = {("English/EmailModel.json", 6), ("Chinese/PhoneNumberModel.json", 1),
           ("Chinese/URLModel.json", 13), ("Japanese/PhoneNumberModel.json", 0),
           # near-duplicates the skeleton key misses: the same sentence as an earlier pick
           # (English #367 / Chinese #371) with the number or date written differently
           ("English/PhoneNumberModel.json", 369), ("Chinese/PhoneNumberModel.json", 374)}


def skeleton(t: str) -> str:
    """The text with every run of digit-bearing tokens replaced by '#' (near-duplicate key)."""
    return re.sub(r"\S*\d\S*(?:\s+\S*\d\S*)*", "#", t.strip())


def n_words(t: str) -> int:
    """Words of >= 2 letters outside e-mail/URL/domain tokens; a CJK/Devanagari run counts 3."""
    t2 = re.sub(r"\S*(?:@|://|\w\.\w)\S*", " ", t)
    return len(re.findall(r"[^\W\d_]{2,}", t2)) + \
        (3 if re.search(r"[\u3040-\u9fff\u0900-\u097f]{4,}", t) else 0)


def recognizer_selection(mirrors: Path) -> list[tuple]:
    """Per spec file, in RT_ALLOC order: inputs with >= 3 words, first of each skeleton, the
    phone template once, no text already seen in an earlier file; then n evenly spaced ones."""
    out, seen_global = [], set()
    for f, n in RT_ALLOC:
        path = "Specs/Sequence/" + f
        cases = json.loads(git_show(mirrors, RT, path))
        seen, tpl, keep = set(), False, []
        for i, case in enumerate(cases):
            t = case["Input"]
            s = skeleton(t)
            if s in seen or n_words(t) < 3 or t in seen_global:
                continue
            seen.add(s)
            if t.lower().startswith(RT_TEMPLATE):
                if tpl:
                    continue
                tpl = True
            keep.append((i, t))
        seen_global.update(t for _, t in keep)
        for k in range(min(n, len(keep))):
            i, t = keep[(k * len(keep)) // n]
            if (f, i) in RT_SKIP:
                continue
            out.append(("recognizer-spec", RT, path, "rt",
                        {"index": i, "lang": RT_LANG[f.split("/")[0]]}))
    return out


# ------------------------------------------------------------------ hand-listed selection
SB = "LeapBeyond/scrubadub"
CR = "madisonmay/CommonRegex"
PY = "GoogleCloudPlatform/python-docs-samples"
NJ = "GoogleCloudPlatform/nodejs-docs-samples"
PN = "daviddrysdale/python-phonenumbers"
PYD = "dlp/snippets/"
PNT = "python/tests/phonenumbermatchertest.py"


def sb(path, start, end="\n", **kw):
    return ("pii-tool-test", SB, path, "span", {"start": start, "end": end, **kw})


def q(src, repo, path, start, quote='"', **kw):
    """A string literal: from `start` to the next closing quote."""
    return (src, repo, path, "span", {"start": start, "end": quote, **kw})


def pn_ctx(pre, num, post):
    return ("phone-matcher-test", PN, PNT, "concat", {"parts": [pre, num, post]})


HAND = [
    # ---- pii-tool-test: scrubadub tests (BEFORE: docstring lines, literal strings) --------
    sb("tests/test_api_advanced.py", "contact me at joe@example.com"),
    sb("tests/test_api_advanced.py", "i'm on twitter (@john_smith) or can be reached"),
    sb("tests/test_detector_credentials.py", "login snoop pw biggreenhat"),
    sb("tests/test_detector_credentials.py", "This is your problem"),
    sb("tests/test_detector_credit_card.py", "My credit card is 378282246310005."),
    sb("tests/test_detector_date_of_birth.py", "My date of birth is 17/06/1976."),
    sb("tests/test_detector_date_of_birth.py", "I was born 15th June 1991"),
    sb("tests/test_detector_drivers_licence.py", "The driving licence number of the claimant"),
    sb("tests/test_detector_drivers_licence.py", "My DVLA NO is MORGA 753116SM91J 01"),
    sb("tests/test_detector_emails.py", "My email is john@gmail.com"),
    sb("tests/test_detector_en_GB_nino.py", "My NI number is"),
    sb("tests/test_detector_en_GB_nino.py", "Enter a National Insurance number"),
    sb("tests/test_detector_en_GB_nino.py", "It’s on your National Insurance card"),
    sb("tests/test_detector_en_GB_trn.py", "My PAYE temp number is"),
    sb("tests/test_detector_en_GB_trn.py", "Enter a Temporary Reference Number"),
    sb("tests/test_detector_en_US_social_security_number.py", "My social security number is 726"),
    sb("tests/test_detector_phone_numbers.py", "Call me on my cell", end="'"),
    sb("tests/test_detector_skype.py", "contact me on skype (dean.malmgren) to chat"),
    sb("tests/test_detector_skype.py", "i'm dean.malmgren on skype"),
    sb("tests/test_detector_text_blob.py", "John is a cat"),
    sb("tests/test_detector_text_blob.py", "Hello. Please testing."),
    sb("tests/test_detector_twitter.py", "My email is john@gmail.com and i tweet"),
    sb("tests/test_detector_twitter.py", "My tweeter is @John_gmail"),
    sb("tests/test_detector_urls.py", "http://bit.ly/aser is neat"),
    sb("tests/test_detector_urls.py", "https://this.is/a/long?url=very#url is good"),
    sb("tests/test_api.py", "This is a test message for example@exampe.com", end='"'),
    sb("tests/test_api.py", "Hello @Jane call me on", end='"'),
    sb("tests/test_api_older.py", "contact Joe Duffy at joe@example.com", end='"'),
    ("pii-tool-test", SB, "tests/test_scrubbers.py", "concat",
     {"parts": ["Alan can be reached by email alan@example.com or ", "phone +1.312.456.6421"]}),
    sb("tests/test_scrubbers.py", "you can skype me at john.doe", end='"'),
    sb("tests/test_locale.py", "Localisation is important for phone numbers '06", end='"'),
    sb("tests/example_real_data/document.txt", "This is is an example", end="\n\nbenchmark"),
    # scrubadub docs examples
    sb("docs/usage.rst", "Meine Telefonnummer ist", end="'", lang="de"),
    sb("docs/usage.rst", "contact me at (478)345-1309", end='"'),
    sb("docs/names.rst", "My name is John and I work", end='"'),
    sb("docs/localization.rst", "My US number is", end="'"),
    sb("docs/localization.rst", "Jane spoke with Georgina", end="'"),
    sb("docs/creating_detectors.rst", "Oranges grow in my garden.", end='"'),
    sb("docs/creating_detectors.rst", "My reservation ID is", end="'"),
    # ---- pii-tool-test: CommonRegex ---------------------------------------------------------
    ("pii-tool-test", CR, "README.md", "span",
     {"start": "John, please get that article", "end": '"""', "dedent": True}),
    ("pii-tool-test", CR, "README.md", "span", {"start": "When are you free?", "end": '"'}),
    ("pii-tool-test", CR, "test.py", "span", {"start": "checkout the new place", "end": '"'}),
    ("pii-tool-test", CR, "test.py", "span", {"start": "hey p.o. box", "end": '"'}),
    # ---- dlp-sample: python-docs-samples dlp/ --------------------------------------------------
    q("dlp-sample", PY, PYD + "Custom_Infotype/inspect_custom_regex_test.py", "Patients MRN"),
    q("dlp-sample", PY, PYD + "Custom_Infotype/inspect_hotword_rule_test.py", "just a number"),
    q("dlp-sample", PY, PYD + "Custom_Infotype/inspect_string_custom_hotword_test.py", "patient's name is"),
    q("dlp-sample", PY, PYD + "Custom_Infotype/inspect_string_custom_omit_overlap_test.py", "Larry Page"),
    q("dlp-sample", PY, PYD + "Custom_Infotype/inspect_string_multiple_rules_test.py", "patient name:"),
    q("dlp-sample", PY, PYD + "Custom_Infotype/inspect_string_multiple_rules_test.py", "doctor: Jane"),
    q("dlp-sample", PY, PYD + "Custom_Infotype/inspect_string_without_overlap_test.py", "example.com is a domain"),
    q("dlp-sample", PY, PYD + "Deidentify/deidentify_deterministic_test.py", "My SSN is 3"),
    q("dlp-sample", PY, PYD + "Deidentify/deidentify_dictionary_replacement_test.py", "My name is Alicia"),
    q("dlp-sample", PY, PYD + "Deidentify/deidentify_exception_list_test.py", "jack@example.org accessed record"),
    q("dlp-sample", PY, PYD + "Deidentify/deidentify_free_text_with_fpe_using_surrogate_test.py", "My phone number is 4"),
    q("dlp-sample", PY, PYD + "Deidentify/deidentify_fpe_test.py", "My favorite color"),
    q("dlp-sample", PY, PYD + "Deidentify/deidentify_replace_infotype.py", "My credit card is", quote="'"),
    ("dlp-sample", PY, PYD + "Deidentify/deidentify_replace_infotype_test.py", "concat",
     {"parts": ["My favorite site is ", "https://cloud.google.com"]}),
    q("dlp-sample", PY, PYD + "Deidentify/deidentify_simple_word_list_test.py", "Patient was seen in RM-YELLOW"),
    q("dlp-sample", PY, PYD + "Deidentify/deidentify_table_condition_infotypes_test.py", "Charles Dickens name"),
    q("dlp-sample", PY, PYD + "Deidentify/deidentify_table_condition_infotypes_test.py", "There are 14 kisses"),
    q("dlp-sample", PY, PYD + "Deidentify/deidentify_table_condition_infotypes_test.py", "Mark Twain loved"),
    q("dlp-sample", PY, PYD + "Deidentify/deidentify_table_with_crypto_hash_test.py", "my email is abby"),
    q("dlp-sample", PY, PYD + "Deidentify/deidentify_table_with_multiple_crypto_hash_test.py", "my userid is abbyabernathy1 and"),
    q("dlp-sample", PY, PYD + "Inspect/inspect_phone_number_test.py", "String with a phone"),
    q("dlp-sample", PY, PYD + "Inspect/inspect_send_data_to_hybrid_job_trigger_test.py", "My email is test"),
    q("dlp-sample", PY, PYD + "Inspect/inspect_string_test.py", "My name is Gary"),
    q("dlp-sample", PY, PYD + "Stored_InfoType/stored_infotype_test.py", "The commit was made"),
    ("dlp-sample", PY, PYD + "resources/accounts.txt", "file", {}),
    ("dlp-sample", PY, PYD + "resources/test.txt", "file", {}),
    ("dlp-sample", PY, PYD + "resources/harmless.txt", "file", {}),
    # ---- dlp-sample: nodejs-docs-samples dlp/ (sentences the Python samples lack) ----------
    q("dlp-sample", NJ, "dlp/deidentifyWithTimeExtraction.js", "My BirthDay", quote="'"),
    q("dlp-sample", NJ, "dlp/inspectStringWithExclusionDict.js", "Some email addresses:", quote="'"),
    q("dlp-sample", NJ, "dlp/redactText.js", "Her email is x"),
    q("dlp-sample", NJ, "dlp/system-test/redact.test.js", "I am 29 years old"),
    q("dlp-sample", NJ, "dlp/system-test/redact.test.js", "No sensitive data"),
    q("dlp-sample", NJ, "dlp/createStoredInfoType.js", "Dictionary of GitHub", quote="'"),
    # ---- phone-matcher-test: python-phonenumbers matcher test --------------------------------
    q("phone-matcher-test", PN, PNT, "Call 033316005"),
    ("phone-matcher-test", PN, PNT, "concat", {"parts": ["My address is CA 34215 - ", "415-666-7777", " is my number."]}),
    ("phone-matcher-test", PN, PNT, "concat", {"parts": ["My number is ", "(415) 666 7777", ". 34215 is my zip-code."]}),
    q("phone-matcher-test", PN, PNT, "Call 650-253-4561 --"),
    q("phone-matcher-test", PN, PNT, "My info: 415-666-7777 123 fake street"),
    # context pairs with >= 2 words (one per near-duplicate frame), i-th filled with the i-th
    # doTestFindInContext number in file order
    pn_ctx("", "033316005", " to call me!"),
    pn_ctx("Hi there, call ", "03-331 6005", " to reach me!"),
    pn_ctx("Hi there, call ", "03 331 6005", ", or don't"),
    pn_ctx("It's cheap! Call ", "0064 3 331 6005", " before 6:30"),
    pn_ctx("Call ", "01164 3 331 6005", " or +1800-123-4567!"),
    # ("Call me on June 2 at" + "+64 3 331 6005": left out, the number is glued to "at" and
    # mark_all cannot mark it)
    pn_ctx("As quoted by Alfonso 12-15 (2009), you may call me at ", "64(0)64123456", ""),
    pn_ctx("As I said on 03/10/2011, you may call me at ", "0123/456789", ""),
    pn_ctx("", "123-456-7890", ", 45 days a year"),
    pn_ctx("Call ", "+1 (650) 333-6000", "/x12 more"),
    pn_ctx("It's only 9.99! Call ", "1-650-333-6000", " to buy"),
    pn_ctx("Call me on 21.6.1984 at ", "0011-650-333-6000", ""),
    pn_ctx("Tel: ", "0081-650-333-6000", " on Saturdays."),
    pn_ctx("", "0191-650-333-6000", ".Nice day."),
]

GENRE = {"recognizer-spec": "spec sentence", "pii-tool-test": "test sentence",
         "dlp-sample": "sample input", "phone-matcher-test": "test sentence"}


def extract(raw: str, kind: str, opt: dict) -> str:
    if kind == "rt":
        return json.loads(raw)[opt["index"]]["Input"]
    if kind == "file":
        return raw.strip()
    if kind == "concat":
        for p in opt["parts"]:
            if p and f'"{p}"' not in raw:
                raise ValueError(f"literal {p!r} not in file")
        return "".join(opt["parts"])
    start = raw.index(opt["start"])
    end = raw.index(opt["end"], start + len(opt["start"]))
    text = raw[start:end]
    if opt.get("dedent"):
        text = "\n".join(ln.strip() for ln in text.split("\n"))
    return text.strip()


def build(mirrors: Path) -> list[dict]:
    corr = json.loads((HERE / "corrections.json").read_text(encoding="utf-8"))
    out, counters, seen = [], {}, set()
    for source, repo, path, kind, opt in recognizer_selection(mirrors) + HAND:
        text = extract(git_show(mirrors, repo, path), kind, opt)
        assert 0 < len(text) <= MAX_CHARS, (path, opt)
        if text in seen:
            raise ValueError(f"duplicate text from {repo}:{path}: {text!r}")
        seen.add(text)
        counters[source] = counters.get(source, 0) + 1
        rid = f"{source}-{counters[source]:03d}"
        origin = f"github:{repo}@{REPOS[repo][0]}:{path}"
        if kind == "rt":
            origin += f"#{opt['index']}"
        spans = mark_all(text, corrected(rid, origin, [], corr))
        out.append({"id": rid, "source": source, "genre": GENRE[source],
                    "lang": opt.get("lang", "en"), "text": text, "spans": spans,
                    "origin": origin})
    validate(out)
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mirrors", type=Path, default=Path(marking.MIRRORS))
    ap.add_argument("--out", type=Path, default=HERE / "part.jsonl")
    ap.add_argument("--dump", action="store_true", help="print texts with spans")
    a = ap.parse_args()
    recs = build(a.mirrors)
    if a.dump:
        dump(recs)
        return 0
    write_part(recs, a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
