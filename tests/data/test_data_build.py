"""`piilab data build | synth | stats` through the real CLI, on fixtures in every real format."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from piilab.cli import main
from piilab.data import BuildConfig, build_dataset, read_records
from piilab.data.answer import parse_answer
from piilab.data.labels import DEFAULT_LABELS
from piilab.errors import PiilabError

FIXTURES = Path(__file__).parent / "fixtures"
ALL_SOURCES = [
    f"kaggle:{FIXTURES / 'kaggle_train.json'}", f"kaggle:{FIXTURES / 'kaggle_test.json'}",
    f"ai4privacy:{FIXTURES / 'ai4privacy_*.jsonl'}", str(FIXTURES / "presidio_v2.json"),
    f"presidio:{FIXTURES / 'presidio_v1.json'}", f"conll:{FIXTURES / 'conll_bio.conll'}",
    str(FIXTURES / "conll_biluo.tsv"), f"spans:{FIXTURES / 'spans.jsonl'}",
]


def records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("built")
    argv = ["data", "build", *[a for s in ALL_SOURCES for a in ("--source", s)],
            "--mix", f"alpaca:{FIXTURES / 'alpaca.json'}:0.1", "--synthetic", "40",
            "--test-size", "0.25", "--seed", "1", "--out", str(out)]
    assert main(argv) == 0
    return out, json.loads((out / "card.json").read_text())


def test_records_in_equal_written_plus_skipped(built):
    out, card = built
    assert card["balanced"] is True
    expected_in = {"kaggle": 5, "ai4privacy": 9, "presidio": 5, "conll": 4, "spans": 4, "synthetic": 40, "alpaca": 6}
    assert {k: v["records_in"] for k, v in card["sources"].items()} == expected_in
    for source in card["sources"].values():
        assert source["records_in"] == source["written"] + sum(source["skip_reasons"].values())
    # Every written document is in exactly one split, and every record line is in a file.
    documents = sum(card["splits"][s]["documents"] for s in ("train", "test"))
    assert documents == sum(v["written"] for v in card["sources"].values())
    for split in ("train", "test"):
        assert len(records(out / f"{split}.jsonl")) == card["splits"][split]["records"]


def test_card_reports_reasons_crosswalk_and_checksums(built):
    out, card = built
    sources = card["sources"]
    assert sources["kaggle"]["skip_reasons"] == {"unlabelled document (no labels to learn from)": 2}
    assert sources["kaggle"]["repairs"] == {"I- tag without B- (started a new entity)": 1}
    assert sources["ai4privacy"]["skip_reasons"] == {"span offsets do not match its value": 1}
    assert sources["ai4privacy"]["notes"] == {"privacy_mask stored as a JSON string": 1,
                                              "privacy_mask stored as a Python repr": 1}
    assert sources["alpaca"]["skip_reasons"]["exact duplicate row"] == 1
    coverage = card["crosswalk"]["coverage"]
    assert coverage["ai4privacy"]["CITY"]["outcomes"] == {"address part without a street (dropped)": 1, "kept": 2}
    assert coverage["presidio"]["GPE"] == {"count": 1, "to": None, "outcomes": {"mapped to nothing": 1}}
    assert coverage["conll"]["LOC"]["to"] is None
    assert list(card["labels"]) == list(DEFAULT_LABELS)
    for split in ("train", "test"):
        entry = card["splits"][split]
        assert entry["sha256"] == hashlib.sha256((out / entry["file"]).read_bytes()).hexdigest()
        assert entry["lengths"]["text_chars"]["n"] == entry["records"]
    assert card["config"]["test_size"] == 0.25 and card["prompt_style"] == "default"
    assert not list(out.glob(".*"))  # no spool or temporary file left behind


def test_every_record_is_consistent(built):
    out, _ = built
    seen_ids = set()
    for record in records(out / "train.jsonl") + records(out / "test.jsonl"):
        assert record["id"] not in seen_ids
        seen_ids.add(record["id"])
        if record["source"] == "alpaca":
            assert record["spans"] is None
            continue
        text = record["text"]
        assert record["prompt"].endswith(text)
        for span in record["spans"]:
            assert text[span["start"]:span["end"]] == span["value"]
            assert span["label"] in DEFAULT_LABELS
        answer = parse_answer(record["completion"])
        assert answer == list(dict.fromkeys((" ".join(s["value"].split()) if "\n" in s["value"] else s["value"],
                                             s["label"]) for s in record["spans"]))
        for value, _ in answer:
            assert value in text or value in " ".join(text.split())
    sources = {r["source"] for r in records(out / "train.jsonl") + records(out / "test.jsonl")}
    assert sources == {"kaggle", "ai4privacy", "presidio", "conll", "notes", "synthetic", "alpaca"}


def test_record_lines_are_compact_json_with_meta_last(built):
    out, _ = built
    for split in ("train", "test"):
        for line in (out / f"{split}.jsonl").read_text(encoding="utf-8").splitlines():
            record = json.loads(line)
            assert line == json.dumps(record, ensure_ascii=False, separators=(",", ":"))
            assert list(record)[-1] == "meta"


def test_known_fixture_answers(built):
    out, _ = built
    by_id = {r["id"]: r for r in records(out / "train.jsonl") + records(out / "test.jsonl")}
    assert by_id["ai4privacy:ai4privacy_300k:30113"]["completion"] == \
        "Hohenstein Georg (NAME)\ngeorg_h84 (USERNAME)\n+49 30 1234567 (PHONE_NUM)"
    assert by_id["ai4privacy:ai4privacy_300k:30114"]["completion"] == \
        "42 Elm Row, Leeds LS1 4AB (STREET_ADDRESS)\nPriya (NAME)"
    assert by_id["presidio:presidio_v2:0"]["completion"] == \
        "Marcus Lee (NAME)\n77 Harbor Road Portland, OR 97201 (STREET_ADDRESS)\n503-555-0134 (PHONE_NUM)"
    assert by_id["ai4privacy:ai4privacy_400k:2066"]["completion"] == "None"


def test_read_records_and_stats(built, capsys):
    out, card = built
    test = read_records(out, "test")
    assert len(test) == card["splits"]["test"]["records"]
    assert read_records(out / "train.jsonl") == records(out / "train.jsonl")
    assert main(["data", "stats", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "matches card" in printed and "DIFFERS" not in printed
    assert main(["data", "stats", str(out), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["splits"]["train"]["records"] == card["splits"]["train"]["records"]
    assert stats["splits"]["test"]["sha256_matches_card"] is True


@pytest.mark.parametrize("line, message", [
    ({"id": "1", "prompt": "p", "text": "t", "spans": []}, r"line 2: record has no 'completion' field"),
    ({"id": "1", "completion": "c", "text": "t", "spans": []}, r"line 2: record has no 'prompt' field"),
    ({"id": "1", "prompt": "p", "completion": 3, "text": "t", "spans": []}, r"line 2: field 'completion' must be str"),
])
def test_read_records_names_file_line_and_field(tmp_path, line, message):
    good = {"id": "0", "prompt": "p", "completion": "c", "text": "t", "spans": None}
    path = tmp_path / "test.jsonl"
    path.write_text(json.dumps(good) + "\n" + json.dumps(line) + "\n")
    with pytest.raises(PiilabError, match=f"test.jsonl: {message}"):
        read_records(tmp_path)


def test_read_records_missing_or_empty(tmp_path):
    with pytest.raises(PiilabError, match="not found"):
        read_records(tmp_path, "test")
    (tmp_path / "test.jsonl").write_text("\n")
    with pytest.raises(PiilabError, match="no records"):
        read_records(tmp_path)


def test_strict_turns_a_bad_record_into_exit_code_2(tmp_path, capsys):
    argv = ["data", "build", "--source", f"ai4privacy:{FIXTURES / 'ai4privacy_300k.jsonl'}", "--out", str(tmp_path / "o")]
    assert main([*argv, "--strict"]) == 2
    assert "ai4privacy_300k.jsonl:4" in capsys.readouterr().err
    assert not (tmp_path / "o" / "train.jsonl").exists()  # nothing half-written
    assert main(argv) == 0


def test_synth_then_build_from_span_jsonl(tmp_path):
    path = tmp_path / "synth.jsonl"
    assert main(["data", "synth", "-n", "60", "--seed", "4", "--out", str(path)]) == 0
    rows = records(path)
    assert len(rows) == 60 and all(r["meta"]["template_id"] for r in rows)
    card = build_dataset(BuildConfig(out=str(tmp_path / "a"), sources=[f"spans:{path}"], test_size=0.2, seed=2))
    direct = build_dataset(BuildConfig(out=str(tmp_path / "b"), synthetic=60, test_size=0.2, seed=4))
    # Written and read back, the documents give the same records as generating them in the build.
    assert card["sources"]["spans"]["written"] == direct["sources"]["synthetic"]["written"]
    a = {r["id"]: r["completion"] for r in records(tmp_path / "a" / "train.jsonl") + records(tmp_path / "a" / "test.jsonl")}
    b = {r["id"]: r["completion"] for r in records(tmp_path / "b" / "train.jsonl") + records(tmp_path / "b" / "test.jsonl")}
    assert a == b


def test_labels_language_and_prompt_style_options(tmp_path):
    out = tmp_path / "o"
    assert main(["data", "build", "--source", str(FIXTURES / "ai4privacy_400k.jsonl"), "--labels", "NAME,EMAIL",
                 "--language", "en", "--prompt-style", "alpaca", "--test-size", "0", "--out", str(out)]) == 0
    card = json.loads((out / "card.json").read_text())
    assert card["sources"]["ai4privacy"]["skip_reasons"] == {"language not selected": 1}
    assert card["crosswalk"]["coverage"]["ai4privacy"]["TELEPHONENUM"]["outcomes"] == {"outside the label set (dropped)": 1}
    train = records(out / "train.jsonl")
    assert {label for r in train for _, label in parse_answer(r["completion"])} == {"NAME", "EMAIL"}
    assert all("### Response:" in r["prompt"] for r in train)


@pytest.mark.parametrize("argv, message", [
    (["--out", "x"], "nothing to build"),
    (["--synthetic", "5", "--test-size", "1.5", "--out", "x"], "test-size"),
    (["--synthetic", "5", "--mix", "alpaca:a.json", "--out", "x"], "alpaca:PATH:FRACTION"),
    (["--synthetic", "5", "--split-by", "colour", "--out", "x"], "split-by"),
    (["--synthetic", "5", "--split-by", "field:", "--out", "x"], "--split-by field: needs a field name"),
    (["--synthetic", "5", "--seed", "-1", "--out", "x"], "--seed must be >= 0, got -1"),
    (["--source", "nowhere/at/all.json", "--out", "x"], "no such file"),
    (["--real", "letters", "--out", "x"], "unknown real-text set 'letters'; shipped: mail"),
])
def test_bad_arguments_are_one_line_errors(tmp_path, capsys, monkeypatch, argv, message):
    monkeypatch.chdir(tmp_path)
    assert main(["data", "build", *argv]) == 2
    assert message in capsys.readouterr().err


def test_the_shipped_mail_set_builds_as_real_text_records(tmp_path):
    out = tmp_path / "mail"
    assert main(["data", "build", "--real", "mail", "--test-size", "0.1", "--out", str(out)]) == 0
    card = json.loads((out / "card.json").read_text())
    assert card["config"]["real"] == ["mail"] and card["sources"]["spans"]["skipped"] == 0
    rows = records(out / "train.jsonl") + records(out / "test.jsonl")
    assert len(rows) == card["sources"]["spans"]["written"] > 500 and {r["source"] for r in rows} == {"mail"}
    labels = {label for r in rows for _, label in parse_answer(r["completion"]) or ()}
    assert labels == {"NAME", "EMAIL", "PHONE_NUM", "URL_PERSONAL"}
    # A real text without a labelled item is a negative: about a quarter of them (DATA_SOURCES.md).
    negatives = sum(parse_answer(r["completion"]) == [] for r in rows)
    assert 0.15 * len(rows) < negatives < 0.35 * len(rows)


def test_alpaca_in_source_is_pointed_to_mix(tmp_path, capsys):
    assert main(["data", "build", "--source", str(FIXTURES / "alpaca.json"), "--out", str(tmp_path)]) == 2
    assert "--mix" in capsys.readouterr().err


def test_config_takes_strings_or_mappings_as_an_experiment_file_would():
    a = BuildConfig(out="x", sources=["kaggle:t.json"], mix=["alpaca:a.json:0.2"])
    b = BuildConfig(out="x", sources=[{"path": "t.json", "format": "kaggle"}], mix=[{"path": "a.json", "fraction": 0.2}])
    assert a == b
    with pytest.raises(PiilabError, match="unknown format"):
        BuildConfig(out="x", sources=[{"path": "t.json", "format": "excel"}])
    assert BuildConfig(out="x", real="mail") == BuildConfig(out="x", real=["mail"])


def test_a_lone_surrogate_escape_is_a_counted_skip_not_a_crash(tmp_path):
    def row(i: int, doc_id: str) -> str:
        text = f"Call Jane Doe about case {i} now."  # distinct texts: duplicates are skipped too
        return json.dumps({"id": doc_id, "text": text, "spans": [{"start": 5, "end": 13, "label": "NAME"}]})

    good = [row(i, f"d{i}") for i in range(4)]
    bad = row(9, "X").replace('"X"', '"\\ud800x"')  # valid JSON, not text
    path = tmp_path / "rows.jsonl"
    path.write_text("\n".join([*good[:2], bad, *good[2:]]) + "\n", encoding="utf-8")
    card = build_dataset(BuildConfig(out=str(tmp_path / "o"), sources=[f"spans:{path}"], test_size=0.25, seed=0))
    source = card["sources"]["spans"]
    assert (source["records_in"], source["written"], source["skipped"]) == (5, 4, 1)
    assert "invalid UTF-8" in source["skip_reasons"]


def write_rows(path: Path, *rows: dict) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def test_a_skipped_document_does_not_make_its_copy_a_duplicate(tmp_path):
    text, name = "Call Ann Lee now", {"start": 5, "end": 12}
    rows = write_rows(tmp_path / "rows.jsonl",
                      {"id": "a", "text": text, "spans": [{**name, "label": "FOO"}]},  # not in the crosswalk
                      {"id": "b", "text": text, "spans": [{**name, "label": "NAME"}]},
                      {"id": "c", "text": "Mail bob@x.org", "spans": [{"start": 5, "end": 14, "label": "EMAIL"}]},
                      {"id": "d", "text": text, "spans": [{**name, "label": "NAME"}]})
    card = build_dataset(BuildConfig(out=str(tmp_path / "o"), sources=[f"spans:{rows}"], test_size=0))
    assert card["sources"]["spans"]["skip_reasons"] == {"label FOO not in the crosswalk": 1, "exact duplicate text": 1}
    assert [r["id"] for r in records(tmp_path / "o" / "train.jsonl")] == ["b", "c"]


def test_a_line_break_in_a_source_name_is_kept_in_the_record(tmp_path):
    rows = write_rows(tmp_path / "rows.jsonl",
                      {"id": "a", "text": "Mail bob@x.org", "source": "my\nsrc\tx",
                       "spans": [{"start": 5, "end": 14, "label": "EMAIL"}]})
    card = build_dataset(BuildConfig(out=str(tmp_path / "o"), sources=[f"spans:{rows}"], test_size=0))
    assert [r["source"] for r in records(tmp_path / "o" / "train.jsonl")] == ["my\nsrc\tx"]
    assert card["splits"]["train"]["by_source"] == {"my src x": 1}


def test_a_built_file_with_mixed_alpaca_rows_reads_back_as_spans(tmp_path):
    first = tmp_path / "first"
    assert main(["data", "build", "--synthetic", "30", "--mix", f"alpaca:{FIXTURES / 'alpaca.json'}:0.1",
                 "--out", str(first)]) == 0
    mixed = sum(r["source"] == "alpaca" for r in records(first / "train.jsonl"))
    assert mixed > 0
    card = build_dataset(BuildConfig(out=str(tmp_path / "again"), sources=[f"spans:{first / 'train.jsonl'}"]))
    assert card["sources"]["spans"]["skip_reasons"] == {"unlabelled document (no labels to learn from)": mixed}


def test_stats_report_an_empty_test_split(tmp_path, capsys):
    rows = write_rows(tmp_path / "rows.jsonl",
                      {"id": "c", "text": "Mail bob@x.org", "spans": [{"start": 5, "end": 14, "label": "EMAIL"}]})
    out = tmp_path / "o"
    build_dataset(BuildConfig(out=str(out), sources=[f"spans:{rows}"], test_size=0.5))
    assert (out / "test.jsonl").read_bytes() == b""
    assert main(["data", "stats", str(out), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)["splits"]
    assert (stats["train"]["records"], stats["test"]["records"]) == (1, 0)
    assert stats["test"]["sha256_matches_card"] is True
    with pytest.raises(PiilabError, match="no records"):
        read_records(out, "test")  # training and evaluation still need some
