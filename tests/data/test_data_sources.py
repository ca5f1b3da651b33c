"""Readers on fixtures in each real format, the round trips, and every kind of bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from piilab.data.sources import (
    SourceSpec,
    ai4privacy,
    alpaca,
    conll,
    detect_format,
    expand_paths,
    kaggle,
    presidio,
    read_documents,
    spans,
)
from piilab.data.sources.base import Tally, check_spans
from piilab.data.sources.tags import ORPHAN_INSIDE, spans_to_tags, tags_to_spans
from piilab.errors import PiilabError

FIXTURES = Path(__file__).parent / "fixtures"


def read_all(reader, path: Path, strict: bool = False) -> tuple[list, Tally]:
    tally = Tally("t", strict=strict)
    return list(reader(path, tally)), tally


def values(doc) -> list[tuple[str, str]]:
    return [(s.value, s.label) for s in doc.spans]


@pytest.mark.parametrize("name, fmt", [
    ("kaggle_train.json", "kaggle"), ("kaggle_test.json", "kaggle"), ("ai4privacy_300k.jsonl", "ai4privacy"),
    ("ai4privacy_400k.jsonl", "ai4privacy"), ("presidio_v2.json", "presidio"), ("presidio_v1.json", "presidio"),
    ("conll_bio.conll", "conll"), ("conll_biluo.tsv", "conll"), ("alpaca.json", "alpaca"), ("spans.jsonl", "spans"),
])
def test_format_is_detected_from_content(name, fmt):
    assert detect_format(FIXTURES / name) == fmt


def test_undetectable_file_names_the_formats(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("just some prose\nwith lines\n")
    with pytest.raises(PiilabError, match="FORMAT:PATH"):
        detect_format(path)


def test_paths_globs_and_directories(tmp_path):
    assert expand_paths(str(FIXTURES / "kaggle_*.json")) == [FIXTURES / "kaggle_test.json", FIXTURES / "kaggle_train.json"]
    assert FIXTURES / "spans.jsonl" in expand_paths(str(FIXTURES))
    with pytest.raises(PiilabError, match="no such file"):
        expand_paths(str(tmp_path / "missing.json"))
    assert SourceSpec.parse("kaggle:a/b.json") == SourceSpec("a/b.json", "kaggle")
    assert SourceSpec.parse("a/b.json") == SourceSpec("a/b.json", "auto")


@pytest.mark.parametrize("text", ["spans:", "", "kaggle:"])
def test_an_empty_path_is_an_error_not_the_current_directory(tmp_path, monkeypatch, text):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "stray.jsonl").write_text('{"text": "Call Jo", "spans": []}\n')
    with pytest.raises(PiilabError, match=f"^{text!r}: empty path"):
        SourceSpec.parse(text)
    with pytest.raises(PiilabError, match="empty path"):
        SourceSpec.named(text) if text else SourceSpec(text)


# Kaggle --------------------------------------------------------------------------------------

def test_kaggle_tokens_rebuild_full_text_and_spans_match():
    raw = json.loads((FIXTURES / "kaggle_train.json").read_text())
    docs, tally = read_all(kaggle.read, FIXTURES / "kaggle_train.json")
    for item, doc in zip(raw, docs):
        rebuilt, starts, ends = kaggle.token_offsets(item["tokens"], item["trailing_whitespace"])
        assert rebuilt == item["full_text"] == doc.text
        assert all(doc.text[s.start:s.end] == s.value for s in doc.spans)
        # The spans give back the BIO tags, except the orphan I- the reader repaired.
        tags = spans_to_tags(starts, ends, [(s.start, s.end, s.label) for s in doc.spans])
        expected = list(item["labels"])
        if item["document"] == 20:
            expected[expected.index("I-NAME_STUDENT")] = "B-NAME_STUDENT"
        assert tags == expected
    assert values(docs[0]) == [("Nathalie Sylla", "NAME_STUDENT"), ("nsylla@example.com", "EMAIL"),
                               ("https://www.linkedin.com/in/nathalie-sylla-4711", "URL_PERSONAL")]
    # An address over a line break keeps the break; a phone split into six tokens is one span.
    assert values(docs[1]) == [("123 Main Street\nSpringfield", "STREET_ADDRESS"), ("(555) 010-2000", "PHONE_NUM")]
    assert tally.repaired == {ORPHAN_INSIDE: 1}


def test_kaggle_test_file_without_labels_is_unlabelled():
    docs, tally = read_all(kaggle.read, FIXTURES / "kaggle_test.json")
    assert [d.spans for d in docs] == [None, None]
    assert tally.read == 2 and not tally.skipped


# tags ----------------------------------------------------------------------------------------

VALID = {
    "BIO": ["O", "B-PER", "I-PER", "O", "B-LOC", "B-LOC", "I-LOC", "O", "B-X"],
    "BILUO": ["O", "B-PER", "L-PER", "O", "U-LOC", "B-LOC", "L-LOC", "O", "U-X"],
    "IOBES": ["O", "B-PER", "E-PER", "O", "S-LOC", "B-LOC", "E-LOC", "O", "S-X"],
}


@pytest.mark.parametrize("scheme", VALID)
def test_tags_to_spans_to_tags_is_the_identity_on_valid_input(scheme):
    tags = VALID[scheme]
    starts = [i * 3 for i in range(len(tags))]
    ends = [s + 2 for s in starts]
    spans, repairs = tags_to_spans(starts, ends, tags)
    assert repairs == []
    assert spans == [(3, 8, "PER"), (12, 14, "LOC"), (15, 20, "LOC"), (24, 26, "X")]
    assert spans_to_tags(starts, ends, spans, scheme) == tags


def test_plain_io_tags_and_orphans():
    starts, ends = [0, 2, 4, 6], [1, 3, 5, 7]
    assert tags_to_spans(starts, ends, ["PER", "PER", "O", "LOC"]) == ([(0, 3, "PER"), (6, 7, "LOC")], [])
    spans, repairs = tags_to_spans(starts, ends, ["I-PER", "I-PER", "B-LOC", "I-PER"])
    assert spans == [(0, 3, "PER"), (4, 5, "LOC"), (6, 7, "PER")]
    assert repairs == [ORPHAN_INSIDE, ORPHAN_INSIDE]
    with pytest.raises(ValueError, match="malformed tag"):
        tags_to_spans(starts, ends, ["B-", "O", "O", "O"])


# ai4privacy ----------------------------------------------------------------------------------

def test_ai4privacy_both_generations_and_string_masks():
    old, tally_old = read_all(ai4privacy.read, FIXTURES / "ai4privacy_300k.jsonl")
    new, tally_new = read_all(ai4privacy.read, FIXTURES / "ai4privacy_400k.jsonl")
    assert [d.id for d in old] == ["ai4privacy:ai4privacy_300k:30113", "ai4privacy:ai4privacy_300k:30114",
                                   "ai4privacy:ai4privacy_300k:30115", "ai4privacy:ai4privacy_300k:30116"]
    assert [d.meta["language"] for d in old + new] == ["en"] * 4 + ["en", "en", "de", "en"]
    assert tally_old.notes == {"privacy_mask stored as a JSON string": 1, "privacy_mask stored as a Python repr": 1}
    assert values(old[1])[-1] == ("Priya", "GIVENNAME1")
    assert "\\n" in old[1].text  # literal escapes are kept: offsets count them
    assert values(old[2])[2] == ("Ana\u2011Maria", "GIVENNAME1")
    assert values(new[0]) == [("Lena", "GIVENNAME"), ("Vogt", "SURNAME"), ("0151 2345678", "TELEPHONENUM"),
                              ("lena.vogt@example.org", "EMAIL")]
    assert tally_new.read == 4 and not tally_new.skipped


def test_ai4privacy_offsets_are_trusted_only_when_they_match():
    docs, tally = read_all(ai4privacy.read, FIXTURES / "ai4privacy_300k.jsonl")
    # Row 4's email offsets are two characters off: moved onto its value and counted.
    assert ("olu.b@mail.example", "EMAIL") in values(docs[3])
    assert sum(tally.repaired.values()) == 1
    # Row 5's passport offsets point elsewhere, far from the value: the row is skipped, not kept wrong.
    assert tally.skipped == {"span offsets do not match its value": 1}
    assert tally.examples["span offsets do not match its value"] == [f"{FIXTURES / 'ai4privacy_300k.jsonl'}:5"]
    assert tally.read == len(docs) + 1


# presidio and CoNLL --------------------------------------------------------------------------

def test_presidio_unsorted_spans_and_newline_address():
    docs, tally = read_all(presidio.read, FIXTURES / "presidio_v2.json")
    assert values(docs[0]) == [("Marcus Lee", "PERSON"), ("77 Harbor Road\nPortland, OR 97201", "STREET_ADDRESS"),
                               ("503-555-0134", "PHONE_NUMBER")]
    assert [d.meta["template_id"] for d in docs] == ["presidio:14", "presidio:31", "presidio:14"]
    v1, _ = read_all(presidio.read, FIXTURES / "presidio_v1.json")
    # v1's tags miss "Sam Ortiz"; the spans are the source of truth.
    assert ("Sam Ortiz", "PERSON") in values(v1[1])


def test_conll_docstart_sentences_and_biluo():
    docs, tally = read_all(conll.read, FIXTURES / "conll_bio.conll")
    assert [d.text for d in docs] == ["Contact Maria Lopez at maria@example.com .\nShe lives in Lisbon .",
                                      "Username : mlopez77 , phone 555 0142"]
    assert values(docs[0]) == [("Maria Lopez", "PER"), ("maria@example.com", "EMAIL"), ("Lisbon", "LOC")]
    # Without -DOCSTART-, each blank-line block is a document.
    docs, _ = read_all(conll.read, FIXTURES / "conll_biluo.tsv")
    assert [values(d) for d in docs] == [[("Ada King", "PERSON"), ("12 Baker Lane", "STREET_ADDRESS")],
                                         [("A-778", "ID_NUM"), ("Bo", "PERSON")]]
    starts, ends = conll.tokens_and_offsets(docs[1].text)
    assert spans_to_tags(starts, ends, [(s.start, s.end, s.label) for s in docs[1].spans], "BILUO") == \
        ["O", "U-ID_NUM", "O", "O", "U-PERSON"]


def test_span_jsonl_keeps_source_meta_and_unlabelled():
    docs, _ = read_all(spans.read, FIXTURES / "spans.jsonl")
    assert [d.source for d in docs] == ["notes"] * 4
    assert docs[0].meta == {"template_id": "t1"}
    assert docs[2].spans == [] and docs[3].spans is None


# bad input -----------------------------------------------------------------------------------

def write_jsonl(path: Path, lines: list) -> Path:
    path.write_bytes(b"".join((line if isinstance(line, bytes) else json.dumps(line).encode()) + b"\n" for line in lines))
    return path


def ai_row(text, *mask, **extra):
    return {"source_text": text, "privacy_mask": [dict(zip(("start", "end", "label", "value"), m)) for m in mask], **extra}


GOOD = ai_row("Call Jo now", (5, 7, "GIVENNAME", "Jo"))
BAD_AI4PRIVACY = [
    (b'{"source_text": "broken', "malformed JSON"),
    (b'{"source_text": "caf\xe9"}', "invalid UTF-8"),
    ({"privacy_mask": []}, "missing field 'source_text'"),
    ({"source_text": "x"}, "missing field 'privacy_mask'"),
    (ai_row("Call Jo", (5, 9, "GIVENNAME", None)), "span out of range"),
    (ai_row("Call me now or later, Jo", (0, 2, "GIVENNAME", "Jo")), "span offsets do not match its value"),
    ({"source_text": "x", "privacy_mask": "not a list at all"}, "privacy_mask is not a list"),
    ([1, 2], "not a JSON object"),
    # in fields the reader never builds (sources.base.field_decoder): still the whole line's fault
    (b'{"source_text": "Call Jo now", "privacy_mask": [], "mbert_text_tokens": ["caf\xe9"]}', "invalid UTF-8"),
    (b'{"source_text": "Call Jo now", "privacy_mask": [], "mbert_bio_labels": ["O",]}', "malformed JSON"),
    # a lone surrogate escape is valid JSON but not text: UTF-8 cannot encode it
    (b'{"source_text": "Call \\ud800 now", "privacy_mask": []}', "invalid UTF-8"),
    (b'{"source_text": "Call Jo now", "privacy_mask": [], "id": "\\udfffx"}', "invalid UTF-8"),
    # valid JSON Python will not read: a huge integer, nesting deeper than its stack
    (b'{"source_text": "Call Jo now", "privacy_mask": [], "id": ' + b"9" * 5000 + b"}", "malformed JSON"),
    (b'{"source_text": "Call Jo now", "privacy_mask": ' + b"[" * 5000 + b"]" * 5000 + b"}", "malformed JSON"),
    (b'{"source_text": "Call Jo now", "privacy_mask": "' + b"[" * 5000 + b"]" * 5000 + b'"}', "privacy_mask is not a list"),
    # (the json module takes this nesting; the UTF-8 check after it, a NaN's path, cannot recurse so deep)
    (b'{"source_text": "Call Jo now", "privacy_mask": [], "x": NaN, "y": ' + b"[" * 600 + b"]" * 600 + b"}", "malformed JSON"),
]


@pytest.mark.parametrize("line, reason", BAD_AI4PRIVACY)
def test_bad_jsonl_rows_are_skipped_and_counted(tmp_path, line, reason):
    path = write_jsonl(tmp_path / "rows.jsonl", [GOOD, line, GOOD])
    docs, tally = read_all(ai4privacy.read, path)
    assert len(docs) == 2
    assert tally.skipped == {reason: 1}
    assert tally.examples[reason][0].startswith(f"{path}:2")
    with pytest.raises(PiilabError, match=f"{path}:2"):
        read_all(ai4privacy.read, path, strict=True)


def test_jsonl_values_are_those_the_json_module_reads(tmp_path):
    """What the fast decoder declines goes to the json module: a BOM, NaN; integers beyond 64 bits
    stay exact. (Lone surrogate escapes go there too, and are skipped: see BAD_AI4PRIVACY.)"""
    path = tmp_path / "rows.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(ai_row("Call Jo now", (5, 7, "GIVENNAME", "Jo"), id=1)).encode()
                     + b'\n{"source_text": "Call Al now", "privacy_mask": [], "id": 123456789012345678901234567890}'
                     + b'\n{"source_text": "Call Cy now", "privacy_mask": [], "id": NaN, "mbert_text_tokens": ["\\u00e9"]}\n')
    docs, tally = read_all(ai4privacy.read, path)
    assert [d.id for d in docs] == ["ai4privacy:rows:1", "ai4privacy:rows:123456789012345678901234567890",
                                    "ai4privacy:rows:nan"]
    assert tally.read == 3 and not tally.skipped and values(docs[0]) == [("Jo", "GIVENNAME")]


@pytest.mark.parametrize("raw, repair, kept", [
    ([(5, 7, "A", "Jo"), (5, 12, "B", "Jo Ames")], "overlapping spans (kept the longer)", [("Jo Ames", "B")]),
    ([(4, 7, "A", " Jo")], "span trimmed of surrounding whitespace", [("Jo", "A")]),
    ([(4, 5, "A", None), (5, 7, "B", None)], "whitespace-only span dropped", [("Jo", "B")]),
    ([(6, 8, "A", "Jo")], "span offsets shifted (<= 8 chars) to match its value", [("Jo", "A")]),
    ([(5, 7, "A", "Jo"), (5, 7, "A", "Jo")], "duplicate span dropped", [("Jo", "A")]),
])
def test_span_repairs_are_counted(raw, repair, kept):
    tally = Tally("t")
    out = check_spans("Call Jo Ames", raw, "here", tally)
    assert [(s.value, s.label) for s in out] == kept
    assert tally.repaired == {repair: 1}
    with pytest.raises(PiilabError, match=r"here: .*--strict"):
        check_spans("Call Jo Ames", raw, "here", Tally("t", strict=True))


@pytest.mark.parametrize("item, reason", [
    ({"full_text": "a b", "tokens": ["a", "b"], "trailing_whitespace": [True], "labels": ["O", "O"]},
     "tokens, trailing_whitespace and labels of different lengths"),
    ({"full_text": "a b", "tokens": ["a", "b"], "trailing_whitespace": [True, False], "labels": ["O"]},
     "tokens, trailing_whitespace and labels of different lengths"),
    ({"full_text": "a  b", "tokens": ["a", "b"], "trailing_whitespace": [True, False], "labels": ["O", "O"]},
     "tokens and trailing_whitespace do not rebuild full_text"),
    ({"full_text": "a b", "tokens": ["a", "b"], "trailing_whitespace": [True, False], "labels": ["B-", "O"]},
     "malformed tag 'B-'"),
    ({"tokens": [], "trailing_whitespace": []}, "missing field 'full_text'"),
    ({"full_text": 5, "tokens": [], "trailing_whitespace": []}, "field 'full_text' has the wrong type"),
])
def test_bad_kaggle_records_are_skipped_and_counted(tmp_path, item, reason):
    good = {"document": 1, "full_text": "Hi Jo", "tokens": ["Hi", "Jo"], "trailing_whitespace": [True, False],
            "labels": ["O", "B-NAME_STUDENT"]}
    path = tmp_path / "train.json"
    path.write_text(json.dumps([good, item]))
    docs, tally = read_all(kaggle.read, path)
    assert len(docs) == 1 and tally.read == 2
    assert tally.skipped == {reason: 1}
    assert tally.examples[reason] == [f"{path}[1]"]


def test_a_kaggle_document_number_of_null_falls_back_to_the_position(tmp_path):
    essay = {"full_text": "Hi Jo", "tokens": ["Hi", "Jo"], "trailing_whitespace": [True, False], "labels": ["O", "O"]}
    path = tmp_path / "train.json"
    path.write_text(json.dumps([{**essay, "document": 7}, {**essay, "document": None}, essay]))
    docs, _ = read_all(kaggle.read, path)
    assert [d.id for d in docs] == ["kaggle:train:7", "kaggle:train:1", "kaggle:train:2"]


def test_malformed_json_list_names_file_and_line(tmp_path):
    path = tmp_path / "train.json"
    path.write_text('[\n{"document": 1,\n "full_text": }\n]')
    with pytest.raises(PiilabError, match=r"train.json: line 3: malformed JSON"):
        read_all(kaggle.read, path)


@pytest.mark.parametrize("body, reason", [
    ('[{"document": ' + "9" * 5000 + "}]", "an integer of more than 4300 digits"),
    ("[" * 5000 + "]" * 5000, "nested too deeply"),
])
def test_a_json_list_python_cannot_read_is_an_error_naming_the_file(tmp_path, body, reason):
    path = tmp_path / "train.json"
    path.write_text(body)
    with pytest.raises(PiilabError, match=rf"train.json: malformed JSON \({reason}\)"):
        read_all(kaggle.read, path)


def test_a_record_nested_deeper_than_the_utf8_check_can_go_is_skipped(tmp_path):
    good = {"document": 1, "full_text": "Hi Jo", "tokens": ["Hi", "Jo"], "trailing_whitespace": [True, False],
            "labels": ["O", "B-NAME_STUDENT"]}
    path = tmp_path / "train.json"
    path.write_text("[" + json.dumps(good) + ', {"x": ' + "[" * 600 + "]" * 600 + "}]")
    docs, tally = read_all(kaggle.read, path)
    assert len(docs) == 1 and tally.skipped == {"malformed JSON": 1}
    assert tally.examples["malformed JSON"] == [f"{path}[1] (nested too deeply)"]


def test_invalid_utf8_in_a_json_list_skips_only_that_record(tmp_path):
    path = tmp_path / "synth.json"
    good = json.dumps({"full_text": "Hi Jo", "spans": [], "template_id": 1}).encode()
    path.write_bytes(b"[" + good + b', {"full_text": "caf\xe9", "spans": []}]')
    docs, tally = read_all(presidio.read, path)
    assert len(docs) == 1 and tally.skipped == {"invalid UTF-8": 1}


def test_conll_line_without_tag_skips_the_document(tmp_path):
    path = tmp_path / "x.conll"
    path.write_text("Hi O\nJo B-PER\n\nlonely\nAnn B-PER\n\n")
    docs, tally = read_all(conll.read, path)
    assert [d.text for d in docs] == ["Hi Jo"]
    assert tally.skipped == {"line without a token and a tag": 1}
    assert tally.examples["line without a token and a tag"] == [f"{path}:4"]


def test_read_documents_keeps_one_tally_per_format():
    tallies: dict[str, Tally] = {}
    pairs = list(read_documents(SourceSpec(str(FIXTURES / "conll_*")), tallies))
    assert set(tallies) == {"conll"} and len(pairs) == 4
    assert tallies["conll"].read == 4 and len(tallies["conll"].files) == 2


@pytest.mark.parametrize("reader, row", [
    (spans, {"id": "a", "text": "Call Jo now", "spans": [{"start": 5, "end": 7, "label": "NAME"}]}),
    (alpaca, {"instruction": "Say hi", "input": "", "output": "hi"}),
])
def test_a_json_list_after_a_long_run_of_whitespace_is_still_a_list(tmp_path, reader, row):
    path = tmp_path / "rows.json"
    path.write_bytes(b"\xef\xbb\xbf" + b" \n\t\r" * 20_000 + json.dumps([row, row]).encode())  # 80 KB, past any peek
    docs, tally = read_all(reader.read, path)
    assert len(docs) == 2 and not tally.skipped
    assert detect_format(path) == reader.NAME
