"""`piilab score`: an `extract --output` file scored against the labelled data it came from."""

from __future__ import annotations

import json

import pytest
from helpers import one_line_error

import piilab.extract
from piilab.cli import main
from piilab.io import row_digest

pytestmark = pytest.mark.usefixtures("one_thread")

ANSWER = "Jane Doe (NAME)\njane@x.org (EMAIL)"  # the model's answer to every text


def span(text: str, value: str, label: str) -> dict:
    start = text.index(value)
    return {"start": start, "end": start + len(value), "label": label, "value": value}


def labelled(texts: dict[str, tuple[str, list]]) -> list[dict]:
    return [{"id": key, "text": text, "spans": [span(text, v, label) for v, label in items]}
            for key, (text, items) in texts.items()]


DOCS = {
    "a": ("Jane Doe wrote to jane@x.org.", [("Jane Doe", "NAME"), ("jane@x.org", "EMAIL")]),
    "b": ("Ask Jane Doe nothing.", []),  # the gold says no PII: the name is a false alarm
    "c": ("Call Jane Doe on 555-0100.", [("Jane Doe", "NAME"), ("555-0100", "PHONE_NUM")]),
}


@pytest.fixture
def extracted(tiny_llama_dir, tmp_path, monkeypatch):
    """(gold file, found file): the docs searched by `piilab extract -o` with a fixed answer."""
    monkeypatch.setattr(piilab.extract, "decode_answers",
                        lambda model, tokenizer, prompts, layer, **kw: ([ANSWER] * len(prompts), [], set()))
    gold, found = tmp_path / "gold.jsonl", tmp_path / "found.jsonl"
    gold.write_text("".join(json.dumps(r) + "\n" for r in labelled(DOCS)))
    assert main(["extract", "--model", str(tiny_llama_dir), "--input", f"spans:{gold}", "-o", str(found),
                 "--validators", "none", "--second-look", "0", "--device", "cpu"]) == 0
    return gold, found


def test_score_counts_what_extract_found_by_span_and_label(extracted, tmp_path, capsys):
    gold, found = extracted
    capsys.readouterr()
    assert main(["score", str(found), "--gold", f"spans:{gold}", "--out", str(tmp_path / "s.json")]) == 0
    table = capsys.readouterr().out
    # gold: 4 items; found: Jane Doe in all three texts and the e-mail in a (c's is invented)
    assert "| all | 3 | 0.750 / 0.750 / 0.750 |" in table
    assert "| NAME | 2 | 0.667 / 1.000 / 0.800 |" in table and "| PHONE_NUM | 1 | 0.000 / 0.000 / 0.000 |" in table
    assert "100.0 items per 100 PII-free texts (n=1)" in table
    assert main(["score", str(found), "--gold", f"spans:{gold}", "--labels", "NAME,EMAIL,PHONE_NUM,ID_NUM"]) == 0
    assert "| ID_NUM | 0 | no PII; 0 spans found |" in capsys.readouterr().out
    saved = json.loads((tmp_path / "s.json").read_text())
    exact = saved["sources"]["all"]["exact"]
    assert (exact["tp"], exact["pred"], exact["gold"]) == (3, 4, 4)
    assert saved["documents"] == 3 and saved["without_row"] == 0


def test_score_refuses_a_row_found_in_another_text_and_counts_unmatched_documents(
        extracted, tmp_path, capsys, caplog):
    gold, found = extracted
    docs = {**DOCS, "d": ("Mail ann@y.org.", [("ann@y.org", "EMAIL")])}
    gold.write_text("".join(json.dumps(r) + "\n" for r in labelled(docs)))
    assert main(["score", str(found), "--gold", f"spans:{gold}", "--out", str(tmp_path / "s.json")]) == 0
    assert json.loads((tmp_path / "s.json").read_text())["without_row"] == 1  # d: not scored
    assert "1 labelled documents have no row (not scored)" in caplog.text
    docs["c"] = ("Call Jane Doe on 555-0199.", [("Jane Doe", "NAME"), ("555-0199", "PHONE_NUM")])
    gold.write_text("".join(json.dumps(r) + "\n" for r in labelled(docs)))
    one_line_error(capsys, ["score", str(found), "--gold", f"spans:{gold}"],
                   'line 3: the row for "c" was found in another text than the labelled document')
    redacted = tmp_path / "redacted.jsonl"
    redacted.write_text(json.dumps({"id": "a", "redacted": "[NAME] wrote"}) + "\n")
    one_line_error(capsys, ["score", str(redacted), "--gold", f"spans:{gold}"],
                   "line 1: not a row of `piilab extract --output` with 'id' and 'items'")


GOLD = [{"id": "g1", "text": "Call Ann Lee now", "spans": [{"start": 5, "end": 12, "label": "NAME"}]},
        {"id": "g2", "text": "Nothing here at all", "spans": []}]


def found_row(doc: dict, items: list[dict]) -> dict:
    """A row as `piilab extract --output` writes it for `doc`."""
    return {"id": doc["id"], "items": items, "input_digest": row_digest(doc["text"])}


def name_item(**span) -> dict:
    """g1's name as found, its span's start/end replaced by `span`."""
    return {"value": "Ann Lee", "label": "NAME", "spans": [{"start": 5, "end": 12, **span}]}


@pytest.fixture
def hand_found(tmp_path):
    """(gold file, write(items of g1) -> found file): a found file written by hand, no model."""
    gold = tmp_path / "gold.jsonl"
    gold.write_text("".join(json.dumps(doc) + "\n" for doc in GOLD))

    def write(items: list[dict]):
        found = tmp_path / "found.jsonl"
        rows = [found_row(GOLD[0], items), found_row(GOLD[1], [])]
        found.write_text("".join(json.dumps(row) + "\n" for row in rows))
        return found

    return gold, write


def test_score_refuses_an_out_folder_before_scoring(hand_found, tmp_path, capsys):
    gold, write = hand_found
    code = main(["score", str(write([name_item()])), "--gold", f"spans:{gold}", "--out", str(tmp_path)])
    captured = capsys.readouterr()
    assert code == 2 and "Traceback" not in captured.err
    assert captured.err.strip().splitlines()[-1].endswith("--out names a folder; give a file name")
    assert captured.out == ""  # refused before scoring: no tables printed


def test_score_uses_the_resolved_label_set_throughout(hand_found, tmp_path, capsys):
    gold, write = hand_found
    out = tmp_path / "s.json"
    assert main(["score", str(write([name_item()])), "--gold", f"spans:{gold}", "--labels", " name",
                 "--out", str(out)]) == 0
    table = capsys.readouterr().out
    assert "| NAME | 1 | 1.000 / 1.000 / 1.000 |" in table and "| name |" not in table
    assert "0 spans with a label outside the set" in table
    assert json.loads(out.read_text())["labels"] == ["NAME"]


def test_score_sets_aside_the_labels_a_chosen_set_leaves_out_but_not_unknown_ones(hand_found, tmp_path, capsys):
    gold, write = hand_found
    other = {"value": "now", "label": "EMAIL", "spans": [{"start": 13, "end": 16}]}
    unknown = {"value": "Call", "label": "PERSON", "spans": [{"start": 0, "end": 4}]}
    found, out = write([name_item(), other, unknown]), tmp_path / "s.json"
    assert main(["score", str(found), "--gold", f"spans:{gold}", "--labels", "NAME", "--out", str(out)]) == 0
    table = capsys.readouterr().out
    # the e-mail is not scored; the label no crosswalk knows is a wrong prediction still
    assert "| all | 2 | 0.500 / 1.000 / 0.667 |" in table
    assert "1 spans with a label outside the set (1 of labels the set leaves out set aside)" in table
    assert json.loads(out.read_text())["set_aside"] == 1
    assert main(["score", str(found), "--gold", f"spans:{gold}"]) == 0
    table = capsys.readouterr().out
    assert "| all | 2 | 0.333 / 1.000 / 0.500 |" in table and "set aside" not in table


def labelled_item(label) -> dict:
    return {"value": "Ann Lee", "label": label, "spans": [{"start": 5, "end": 12}]}


@pytest.mark.parametrize("items, error", [
    ([name_item(start="5", end="12")],
     "items[0].spans[0].start: must be an integer character offset, not a string"),
    ([name_item(start=5.0, end=12.5)],
     "items[0].spans[0].start: must be an integer character offset, not 5.0"),
    ([name_item(end=12.5)], "items[0].spans[0].end: must be an integer character offset, not 12.5"),
    ([name_item(start=True)],
     "items[0].spans[0].start: must be an integer character offset, not true"),
    ([name_item(), labelled_item(["NAME"])], "items[1].label: must be a string, not an array"),
    ([labelled_item(7)], "items[0].label: must be a string, not 7"),
    ([labelled_item(None)], "items[0].label: must be a string, not null"),
    ([name_item(start=500, end=-3)],
     "items[0].spans[0].start: 500 is not in the text (0 <= start < 16)"),
    ([name_item(start=-1)], "items[0].spans[0].start: -1 is not in the text"),
    ([name_item(end=17)], "items[0].spans[0].end: 17 is not in the text (0 < end <= 16)"),
    ([name_item(start=12, end=5)], "items[0].spans[0].end: 5 is not after start 12"),
    ([name_item(end=5)], "items[0].spans[0].end: 5 is not after start 5"),
])
def test_score_refuses_a_span_with_a_bad_label_or_offset(hand_found, capsys, items, error):
    gold, write = hand_found
    one_line_error(capsys, ["score", str(write(items)), "--gold", f"spans:{gold}"], f"line 1: {error}")


def test_score_takes_spans_up_to_the_text_s_ends(hand_found, capsys):
    gold, write = hand_found
    first, last = name_item(start=0, end=4), name_item(start=13, end=16)  # "Call", "now"
    assert main(["score", str(write([name_item(), first, last])), "--gold", f"spans:{gold}"]) == 0
    assert "| NAME | 1 | 0.333 / 1.000 / 0.500 |" in capsys.readouterr().out


def test_numeric_ids_match_the_readers_strings_and_no_match_names_both_sides(tmp_path, capsys):
    # `extract --input FILE.jsonl` keeps an id as written (7); the labelled readers make it "7"
    docs = [{**doc, "id": number} for number, doc in enumerate(GOLD, 7)]
    gold, found = tmp_path / "gold.jsonl", tmp_path / "found.jsonl"
    gold.write_text("".join(json.dumps(doc) + "\n" for doc in docs))
    found.write_text("".join(json.dumps(found_row(doc, [name_item()] if doc["spans"] else [])) + "\n"
                             for doc in docs))
    assert main(["score", str(found), "--gold", f"spans:{gold}", "--out", str(tmp_path / "s.json")]) == 0
    assert json.loads((tmp_path / "s.json").read_text())["documents"] == 2
    found.write_text(json.dumps({"id": 0, "items": []}) + "\n")
    one_line_error(capsys, ["score", str(found), "--gold", f"spans:{gold}"],
                   'its first id is "0", theirs "7": are they the same data?')


def test_unreadable_labelled_records_are_a_warning_naming_where_and_a_count_in_the_scores(
        hand_found, tmp_path, capsys, caplog):
    gold, write = hand_found
    found = write([name_item()])
    bad = {"id": "g3", "text": "Ring Bo", "spans": [{"start": 5, "end": 7}]}  # no label
    gold.write_text(gold.read_text() + json.dumps(bad) + "\n")
    out = tmp_path / "s.json"
    with caplog.at_level("WARNING", logger="piilab.data.labelled"):
        assert main(["score", str(found), "--gold", f"spans:{gold}", "--out", str(out)]) == 0
    assert f"left out: 1 span without start, end and label (first: {gold}:3)" in caplog.text
    assert "Ring Bo" not in caplog.text  # where, never what
    assert json.loads(out.read_text())["left_out"] == {"span without start, end and label": 1}
    assert "1 labelled records left out" in capsys.readouterr().out
