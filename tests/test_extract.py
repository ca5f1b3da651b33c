"""`extract`: prompt as training did, parse the answer, place each item in the text, redact."""

import hashlib
import json
import logging
import sys

import pytest
import torch
from tiny import save_model_dir, tiny_llama

import piilab.extract
from piilab.cli import main
from piilab.data.instruct import get_style
from piilab.data.labels import DEFAULT_LABELS
from piilab.extract import Extraction, extract, locate, place
from piilab.models.prompts import PromptFormat
from piilab.pii_prompt import PromptSettings, prompt_settings

pytestmark = pytest.mark.usefixtures("one_thread")

TEXT = ("Jane Doe (jane.doe@example.com) met Omar at 12 Oak Street,\nSpringfield. "
        "Later Jane Doe called +1 555 010 2000.")
ANSWER = ("Jane Doe (NAME)\njane.doe@example.com (EMAIL)\n12 Oak Street, Springfield (STREET_ADDRESS)\n"
          "+1 555 010 2000 (PHONE_NUM)\nJohn Roe (NAME)\nnot an answer line")


@pytest.fixture
def fixed_answer(monkeypatch):
    """The model's answer is ANSWER; the prompts it was given are recorded."""
    seen = {}

    def fake_decode(model, tokenizer, prompts, layer, **kwargs):
        seen.update(prompts=list(prompts), layers=[layer], kwargs=kwargs)
        return [ANSWER] * len(prompts), [], set()  # the answers; no branches, none cut

    monkeypatch.setattr(piilab.extract, "decode_answers", fake_decode)
    return seen


def test_locate_finds_every_occurrence_exactly_then_loosely():
    assert locate(TEXT, "Jane Doe") == [(0, 8), (78, 86)]
    assert TEXT[78:86] == "Jane Doe"
    start, end = locate(TEXT, "12 Oak Street, Springfield")[0]  # a line break in the text
    assert TEXT[start:end] == "12 Oak Street,\nSpringfield"
    assert locate(TEXT, "JANE.DOE@example.com") == [(10, 30)]
    assert locate(TEXT, "John Roe") == [] and locate(TEXT, "  ") == []


def test_locate_places_values_only_on_token_boundaries():
    text = "Ann wrote the Annual report with Hanna; call 555-1234, not 1555-12345. ANN signs."
    assert locate(text, "Ann") == [(0, 3)]  # not inside "Annual" or "Hanna"
    assert locate(text, "555-1234") == [(45, 53)]  # not inside "1555-12345"
    assert locate("Annual Hanna", "ann") == []  # nor inside words when matched loosely
    assert locate("x\nANN B.", "ann b.") == [(2, 8)]  # loose match ending in punctuation
    # values that start or end with punctuation carry their own boundary on that side
    assert locate("ping x@user or @user!", "@user") == [(6, 11), (15, 20)]
    assert locate("tel:(555) 0101", "(555) 010") == []  # ends inside the number "0101"
    assert locate("tel:(555) 010, home", "(555) 010") == [(4, 13)]
    assert locate("tel:(555)   010 x", "(555) 010") == [(4, 15)]  # whitespace still flexible


def test_redaction_never_masks_inside_other_words():
    text = "Ann filed the Annual report for Hanna."
    placed, _ = place(text, [("Ann", "NAME")])
    assert Extraction(text, 1, [], placed, []).redacted() == "[NAME] filed the Annual report for Hanna."


def test_redaction_masks_all_of_crossing_spans():
    text = "Contact Maria Lopez Street 5 today"
    items = [{"value": "Maria Lopez", "label": "NAME", "spans": [{"start": 8, "end": 19}]},
             {"value": "Lopez Street 5", "label": "STREET_ADDRESS", "spans": [{"start": 14, "end": 28}]}]
    assert Extraction(text, 1, [], items).redacted() == "Contact [NAME][STREET_ADDRESS] today"


def test_locate_keeps_combining_marks_with_their_letters():
    text = "Ask Jose\u0301 Garci\u0301a or Jose about it"  # "José García", decomposed
    assert locate(text, "Jose") == [(text.rindex("Jose"), text.rindex("Jose") + 4)]
    assert locate(text, "Jose\u0301 Garci\u0301a") == [(4, 17)]
    assert locate("Ask Jose\u0301s", "Jose\u0301") == []  # inside a longer word


def test_place_keeps_answer_order_and_sets_invented_values_apart():
    placed, invented = place(TEXT, [("Jane Doe", "NAME"), ("John Roe", "NAME"), ("Jane Doe", "NAME"),
                                    ("Omar", "NAME")])
    assert [(p["value"], p["label"]) for p in placed] == [("Jane Doe", "NAME"), ("Omar", "NAME")]
    assert placed[0]["spans"] == [{"start": 0, "end": 8}, {"start": 78, "end": 86}]
    assert invented == [{"value": "John Roe", "label": "NAME"}]


def test_redaction_masks_every_occurrence_and_prefers_the_longer_of_overlaps():
    placed, _ = place(TEXT, [("Jane Doe", "NAME"), ("jane.doe@example.com", "EMAIL"),
                             ("jane.doe", "USERNAME"), ("Springfield", "STREET_ADDRESS")])
    redacted = Extraction(TEXT, 4, [], placed, []).redacted()
    assert redacted == ("[NAME] ([EMAIL]) met Omar at 12 Oak Street,\n[STREET_ADDRESS]. "
                        "Later [NAME] called +1 555 010 2000.")


def test_a_label_outside_the_set_is_reported_and_never_placed(fixed_answer, tokenizer, monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "ANSWER", "Jane Doe (NAME)\n+1 555 010 2000 (SSN)")
    settings = PromptSettings(labels=("NAME", "EMAIL"))
    result = extract(tiny_llama(tokenizer), tokenizer, [TEXT], layer=4, settings=settings,
                     prompt_format=PromptFormat("plain"))[0]
    assert [item["value"] for item in result.items] == ["Jane Doe"]
    assert result.outside_labels == [{"value": "+1 555 010 2000", "label": "SSN"}]
    assert "555" in result.redacted() and result.to_dict()["outside_labels"]


def test_answers_are_constrained_to_each_window_unless_asked_otherwise(fixed_answer, tokenizer):
    settings = PromptSettings(labels=("NAME", "EMAIL"), max_chars=60, overlap=10)
    extract(tiny_llama(tokenizer), tokenizer, [TEXT], layer=4, settings=settings,
            prompt_format=PromptFormat("plain"))
    rules = fixed_answer["kwargs"]["rules"]
    assert len(rules) == len(fixed_answer["prompts"]) > 1
    for (window, labels), prompt in zip(rules, fixed_answer["prompts"]):
        assert window in TEXT and window in prompt and labels == ("NAME", "EMAIL")
    extract(tiny_llama(tokenizer), tokenizer, [TEXT], layer=4, settings=settings,
            prompt_format=PromptFormat("plain"), constrain=False)
    assert fixed_answer["kwargs"]["rules"] is None


def test_extract_prompts_like_training_and_places_the_answer(fixed_answer, tokenizer):
    fmt = PromptFormat(kind="chat", chat_template=tokenizer.chat_template)
    settings = PromptSettings(style="alpaca", labels=("NAME", "EMAIL"))
    [result] = extract(tiny_llama(tokenizer), tokenizer, [TEXT], layer=3, settings=settings, prompt_format=fmt)
    assert fixed_answer["layers"] == [3]
    assert fixed_answer["prompts"] == [fmt.render(tokenizer, get_style("alpaca").pii(TEXT, ("NAME", "EMAIL")))]
    assert fixed_answer["kwargs"]["add_special_tokens"] is False  # the chat template writes its own
    assert [i["value"] for i in result.items] == ["Jane Doe", "jane.doe@example.com"]
    # labels outside the set ("NAME", "EMAIL") are reported, never placed
    assert [i["label"] for i in result.outside_labels] == ["STREET_ADDRESS", "PHONE_NUM"]
    assert result.invented == [{"value": "John Roe", "label": "NAME"}]
    for item in result.items:
        for span in item["spans"]:
            assert " ".join(TEXT[span["start"]:span["end"]].split()) == item["value"]


def test_long_texts_are_windowed_like_training_and_answers_merged(fixed_answer, tokenizer):
    long_text = " ".join([TEXT] * 8)
    settings = PromptSettings(max_chars=300, overlap=50)
    [result] = extract(tiny_llama(tokenizer), tokenizer, [long_text], layer=2, settings=settings,
                       prompt_format=PromptFormat(kind="plain"))
    assert len(fixed_answer["prompts"]) > 1 and len(result.answers) == len(fixed_answer["prompts"])
    assert fixed_answer["kwargs"]["add_special_tokens"] is True
    assert [i["value"] for i in result.items][0] == "Jane Doe"
    assert len(result.items[0]["spans"]) == 16  # every occurrence in the whole text


CONTACTS = "Ann Lee (ann@x.org) and Bo Chan (bo@y.org) met Cy Dunn (cy@z.org) at noon."
PEOPLE = [("Ann Lee", "NAME"), ("ann@x.org", "EMAIL"), ("Bo Chan", "NAME"), ("bo@y.org", "EMAIL"),
          ("Cy Dunn", "NAME"), ("cy@z.org", "EMAIL")]


def answering_in(budget_chars: int, monkeypatch):
    """A model that names each item of PEOPLE its window shows, in order, but whose answer is cut
    (after its first item and part of the next) when the window is longer than `budget_chars`."""
    windows = []

    def fake_decode(model, tokenizer, prompts, layer, *, rules, **kwargs):
        windows.append([window for window, _ in rules])
        answers, cut = [], set()
        for row, (window, _) in enumerate(rules):
            lines = [f"{value} ({label})" for value, label in PEOPLE if value in window]
            if len(window) > budget_chars and len(lines) > 1:
                lines, cut = [lines[0], lines[1][:4]], cut | {row}
            answers.append("\n".join(lines))
        return answers, [], cut

    monkeypatch.setattr(piilab.extract, "decode_answers", fake_decode)
    return windows


def test_a_cut_answers_window_is_halved_and_searched_again(tokenizer, monkeypatch, caplog):
    windows = answering_in(45, monkeypatch)
    caplog.set_level(logging.INFO, "piilab.halving")
    [result] = extract(tiny_llama(tokenizer), tokenizer, [CONTACTS], layer=4, prompt_format=PromptFormat("plain"))
    assert sorted((i["value"], i["label"]) for i in result.items) == sorted(PEOPLE)  # none lost
    assert windows[0] == [CONTACTS] and len(windows[1]) == 2  # the text, then its halves
    assert all(len(w) < len(CONTACTS) * 0.7 and w in CONTACTS for w in windows[1])
    assert result.answers[0] == "Ann Lee (NAME)\nann@" and len(result.answers) == sum(map(len, windows))
    assert "1 answer(s) cut at max_new_tokens 128" in caplog.text
    assert "still cut" not in caplog.text


def test_where_a_window_and_its_halves_disagree_the_windows_answer_holds(tokenizer, monkeypatch):
    text = "Steuer-ID: 65 929 970 489\nSehr geehrte Damen und Herren, Ihre Jana Roth"
    calls = []

    def decode(model, tokenizer, prompts, layer, **kwargs):
        calls.append(len(prompts))
        if len(calls) == 1:  # the window: cut after two items
            return ["65 929 970 489 (ID_NUM)\nSehr geehrte (NAME)\nJa"], [], {0}
        return ["65 929 970 489 (PHONE_NUM)\n970 489 (ID_NUM)", "Jana Roth (NAME)\nMax Bo (NAME)"], [], set()

    monkeypatch.setattr(piilab.extract, "decode_answers", decode)
    [result] = extract(tiny_llama(tokenizer), tokenizer, [text], layer=4, prompt_format=PromptFormat("plain"))
    assert calls == [1, 2]
    assert [(i["value"], i["label"], len(i["spans"])) for i in result.items] == [
        ("65 929 970 489", "ID_NUM", 1), ("Sehr geehrte", "NAME", 1), ("Jana Roth", "NAME", 1)]
    assert result.invented == [{"value": "Max Bo", "label": "NAME"}]
    assert "found_by" not in result.items[-1]  # the model's own item, from a shorter window


def test_answers_still_cut_after_the_last_halving_are_warned_about(tokenizer, monkeypatch, caplog):
    calls = []

    def always_cut(model, tokenizer, prompts, layer, **kwargs):
        calls.append(len(prompts))
        return ["Ann Lee (NAME)\nan"] * len(prompts), [], set(range(len(prompts)))

    monkeypatch.setattr(piilab.extract, "decode_answers", always_cut)
    [result] = extract(tiny_llama(tokenizer), tokenizer, [CONTACTS], layer=4, prompt_format=PromptFormat("plain"))
    assert len(calls) == piilab.halving.HALVINGS + 1 and calls[:2] == [1, 2]
    assert [(i["value"], i["label"]) for i in result.items] == [("Ann Lee", "NAME")]  # whole lines kept
    assert f"{calls[-1]} answer(s) still cut at max_new_tokens 128 after halving" in caplog.text


def test_sampling_turns_prompt_lookup_off_once_not_at_every_halving(tokenizer, monkeypatch, caplog):
    from piilab.layers.decode import Decoding

    engines = []

    def always_cut(model, tokenizer, prompts, layer, speedups, **kwargs):
        engines.append(speedups.lookup)
        return ["Ann Lee (NAME)\nan"] * len(prompts), [], set(range(len(prompts)))

    monkeypatch.setattr(piilab.extract, "decode_answers", always_cut)
    caplog.set_level(logging.INFO, "piilab.extract")
    extract(tiny_llama(tokenizer), tokenizer, [CONTACTS], layer=4, prompt_format=PromptFormat("plain"),
            decoding=Decoding(max_new_tokens=128, sample=True))
    assert engines == [False] * (piilab.halving.HALVINGS + 1)
    assert caplog.text.count("prompt-lookup decoding not used: sampling") == 1


def test_halves_cover_a_window_in_two_shorter_overlapping_parts():
    from piilab.halving import halves

    window = " ".join(f"word{i}" for i in range(150))
    first, second = halves(window, 200)
    assert window.startswith(first) and window.endswith(second)
    assert max(len(first), len(second)) < 0.57 * len(window)
    shared = len(first) + len(second) - len(window)
    assert len(window) // 8 - 10 <= shared <= len(window) // 8 + 10  # an eighth (less than 200)
    listing = "\n".join(f"- Person {i}, tel. 030 5550 12{i:02d}" for i in range(12))
    parts = halves(listing, 200)
    assert len(parts) == 2 and parts[0].endswith("\n")  # cut between lines, never inside one
    assert all(set(part.splitlines()) < set(listing.splitlines()) for part in parts)
    assert [part.strip() for part in halves(" " * 40 + "Jane", 200)] == ["Jane"]  # no blank part
    for joint in ("\n", ". "):  # a break in the very middle: neither part cuts a phone number
        two = f"Ann Lee, phone +1 415 555 0199{joint}Bob Roe, phone +1 212 555 0143"
        assert halves(two, 200) == [f"Ann Lee, phone +1 415 555 0199{joint}", "Bob Roe, phone +1 212 555 0143"]
    rows = "\n".join(f"Name {i} Surname,name{i}@mail.no,+47 412 55 0{i:02d},Springfield" for i in range(12))
    parts = halves(rows, 200)  # a CSV is cut between its rows (which hold spaces), sharing some
    assert len(parts) == 2 and all(set(part.strip("\n").split("\n")) < set(rows.split("\n")) for part in parts)
    assert len(parts[0]) + len(parts[1]) > len(rows)


def test_cut_rows_are_those_max_new_tokens_ended(tokenizer):
    from piilab.halving import cut_rows
    from piilab.layers.decode import Decoding

    eos = tokenizer.eos_token_id
    a, b = tokenizer.encode("Jane Doe (NAME)", add_special_tokens=False)[:2]
    rows = [[a, b, a], [a, b, eos], [a, b], [a, b, a, b]]
    assert cut_rows(tokenizer, rows, Decoding(max_new_tokens=3), [eos]) == {0, 3}
    stop = tokenizer.decode([b])
    assert cut_rows(tokenizer, rows, Decoding(max_new_tokens=3, stop=(stop,)), [eos]) == set()


def test_both_engines_name_the_answers_max_new_tokens_cut(tokenizer):
    from piilab.extract import SpeedUps, decode_answers
    from piilab.halving import cut_rows
    from piilab.layers.decode import Decoding, generate

    model = tiny_llama(tokenizer, max_position_embeddings=1024)
    texts = [TEXT, "Call Jane Doe.", "Omar wrote.", "jane.doe@example.com"]
    prompts = [f"Find PII: {text}\nAnswer:" for text in texts]
    rules = [(text, ("NAME", "EMAIL")) for text in texts]
    decoding = Decoding(max_new_tokens=6)
    plain = generate(model, tokenizer, prompts, [4], decoding=decoding, answers=rules,
                     batch_size=4, progress=False, return_details=True).token_ids[4]
    ended = {row for row, ids in enumerate(plain) if len(ids) < 6 or ids[-1] == tokenizer.eos_token_id}
    assert ended and len(ended) < len(texts)  # some rows end, some are cut
    for speedups in (SpeedUps(), SpeedUps.off()):
        cut = decode_answers(model, tokenizer, prompts, 4, lens="norm", decoding=decoding,
                             batch_size=2, add_special_tokens=True, progress=False,
                             speedups=speedups, rules=rules, labels=("NAME", "EMAIL"))[2]
        assert cut == set(range(len(texts))) - ended == cut_rows(tokenizer, plain, decoding,
                                                                 [tokenizer.eos_token_id])


def test_a_span_inside_a_longer_one_of_its_label_is_not_placed(fixed_answer, tokenizer, monkeypatch):
    text = "Jane Doe wrote to jane@x.org; Jane called Doe Ltd. Jane Doe left."
    monkeypatch.setattr(sys.modules[__name__], "ANSWER",
                        "Jane Doe (NAME)\nJane (NAME)\njane@x.org (EMAIL)\njane (NAME)\nJane Doe left (NAME)")
    [found] = extract(tiny_llama(tokenizer), tokenizer, [text], layer=4, prompt_format=PromptFormat("plain"))
    assert [(i["value"], [s["start"] for s in i["spans"]]) for i in found.items] == [
        ("Jane Doe", [0]),  # not 51: inside the longer NAME "Jane Doe left"
        ("Jane", [30]),  # only where it stands alone
        ("jane@x.org", [18]),
        ("jane", [18]),  # inside a span of another label: kept
        ("Jane Doe left", [51])]


def test_extract_takes_a_list_of_texts_not_one_string(fixed_answer, tokenizer):
    from piilab.errors import PiilabError

    for texts in (TEXT, None):
        with pytest.raises(PiilabError, match="texts must be a list of strings"):
            extract(tiny_llama(tokenizer), tokenizer, texts, layer=4, prompt_format=PromptFormat("plain"))
    found = extract(tiny_llama(tokenizer), tokenizer, (t for t in [TEXT, TEXT]), layer=4,
                    prompt_format=PromptFormat("plain"), validators="check, extend")
    assert len(found) == 2 and found[0].items == found[1].items  # any iterable; modes as a string
    with pytest.raises(PiilabError, match="second_look"):
        extract(tiny_llama(tokenizer), tokenizer, [TEXT], layer=4, prompt_format=PromptFormat("plain"), second_look=-1)


def test_prompt_settings_come_from_the_training_data_card(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "card.json").write_text(json.dumps({
        "prompt_style": "alpaca", "labels": {"NAME": "a name", "EMAIL": "an email"},
        "config": {"max_chars": 1500, "overlap": 100}}))
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "train_config.json").write_text(json.dumps({"config": {"data": str(data)}}))
    settings = prompt_settings(adapter)
    assert (settings.style, settings.labels, settings.max_chars, settings.overlap) == (
        "alpaca", ("NAME", "EMAIL"), 1500, 100)
    assert prompt_settings(tmp_path / "nothing-here") == PromptSettings()
    assert prompt_settings(None).labels is None
    assert piilab.extract.prompt_settings is prompt_settings  # where the docs once imported it


def test_cli_prints_items_with_spans_and_invented_values(fixed_answer, tiny_llama_dir, capsys):
    assert main(["extract", "--model", str(tiny_llama_dir), TEXT, "--device", "cpu"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["layer"] == 4 and out["answers"] == [ANSWER]
    assert out["items"][0] == {"value": "Jane Doe", "label": "NAME",
                               "spans": [{"start": 0, "end": 8}, {"start": 78, "end": 86}]}
    assert out["invented"] == [{"value": "John Roe", "label": "NAME"}]
    labels = ", ".join(DEFAULT_LABELS)
    assert all(label in fixed_answer["prompts"][0] for label in labels.split(", "))


def test_cli_redacts_texts_from_a_jsonl_file(fixed_answer, tiny_llama_dir, tmp_path, capsys):
    path = tmp_path / "texts.jsonl"
    path.write_text(json.dumps({"id": "x", "text": TEXT}) + "\n" + json.dumps({"text": "Omar"}) + "\n")
    assert main(["extract", "--model", str(tiny_llama_dir), "--input", str(path), "--redact",
                 "--layer", "2", "--device", "cpu"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["id"] for r in rows] == ["x", 1]
    assert rows[0]["redacted"].startswith("[NAME] ([EMAIL]) met Omar at [STREET_ADDRESS].")
    assert rows[1]["redacted"] == "Omar"


def test_cli_offsets_and_redaction_keep_a_text_files_crlf_line_ends(fixed_answer, tiny_llama_dir,
                                                                      tmp_path, capsys):
    raw = (TEXT + "\nRegards,\nJane Doe\n").replace("\n", "\r\n")
    path = tmp_path / "letter.txt"
    path.write_bytes(raw.encode())
    assert main(["extract", "--model", str(tiny_llama_dir), "--input", str(path), "--device", "cpu"]) == 0
    items = json.loads(capsys.readouterr().out)["items"]
    phone = next(item for item in items if item["label"] == "PHONE_NUM")
    assert [raw[s["start"]:s["end"]] for s in phone["spans"]] == ["+1 555 010 2000"]
    assert main(["extract", "--model", str(tiny_llama_dir), "--input", str(path), "--redact",
                 "--device", "cpu"]) == 0
    assert capsys.readouterr().out == ("[NAME] ([EMAIL]) met Omar at [STREET_ADDRESS]. Later [NAME] "
                                       "called [PHONE_NUM].\r\nRegards,\r\n[NAME]\r\n")


def test_cli_skips_rows_that_are_not_valid_unicode(fixed_answer, tiny_llama_dir, tmp_path, capsys, caplog):
    path = tmp_path / "texts.jsonl"
    path.write_text('{"id": "a", "text": "Omar"}\n{"id": "b", "text": "Omar \\ud800"}\n'
                    '{"id": "c\\udc80", "text": "Omar"}\n{"id": "d", "text": "Jane Doe"}\n')
    out = tmp_path / "found.jsonl"
    assert main(["extract", "--model", str(tiny_llama_dir), "--input", str(path), "-o", str(out),
                 "--device", "cpu"]) == 0
    assert [json.loads(line)["id"] for line in out.read_text().splitlines()] == ["a", "d"]
    assert "line 2: not valid Unicode" in caplog.text and "line 3: not valid Unicode" in caplog.text


def test_cli_counts_items_by_who_found_them_without_values(fixed_answer, tiny_llama_dir, capsys, caplog):
    caplog.set_level(logging.INFO, "piilab.cli.extract")
    text = TEXT + " Mail omar@example.org, or support@example.org."
    assert main(["extract", "--model", str(tiny_llama_dir), text, "--device", "cpu"]) == 0
    row = json.loads(capsys.readouterr().out)
    by = [item.get("found_by", "model") for item in row["items"]]
    assert by.count("pattern") == 1 and by.count("model") == len(by) - 1  # Omar's address: a pattern's
    summary = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("items: "))
    assert summary == (f"items: {len(by)} (model {len(by) - 1}, pattern 1); "
                       f"{len(row['rejected'])} of the model's dropped by the validators")
    assert "omar" not in caplog.text.lower()


def test_cli_writes_each_round_of_texts_in_order(fixed_answer, tiny_llama_dir, tmp_path, capsys, monkeypatch):
    import piilab.cli.extract

    rounds = []
    real_extract = piilab.extract.extract
    monkeypatch.setattr(piilab.extract, "extract", lambda m, t, texts, **kw: rounds.append(list(texts))
                        or real_extract(m, t, texts, **kw))
    monkeypatch.setattr(piilab.cli.extract, "TEXTS_AT_A_TIME", 2)
    path = tmp_path / "texts.jsonl"
    path.write_text("".join(json.dumps({"id": f"t{i}", "text": f"{TEXT} ({i})"}) + "\n" for i in range(5)))
    assert main(["extract", "--model", str(tiny_llama_dir), "--input", str(path), "--device", "cpu"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [len(r) for r in rounds] == [2, 2, 1]
    assert [r["id"] for r in rows] == [f"t{i}" for i in range(5)]
    assert all(r["items"][0]["value"] == "Jane Doe" for r in rows)


def write_texts(path, rows) -> None:
    path.write_text("".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows))


def test_cli_output_resumes_after_the_rows_a_killed_run_wrote(fixed_answer, tiny_llama_dir, tmp_path,
                                                             capsys, monkeypatch):
    import piilab.cli.extract

    monkeypatch.setattr(piilab.cli.extract, "TEXTS_AT_A_TIME", 2)
    texts, out = tmp_path / "texts.jsonl", tmp_path / "found.jsonl"
    write_texts(texts, [{"id": f"t{i}", "text": f"{TEXT} ({i})"} for i in range(5)])
    argv = ["extract", "--model", str(tiny_llama_dir), "--input", str(texts), "-o", str(out),
            "--device", "cpu"]
    rounds, real_extract = [], piilab.extract.extract

    def killed_in_round_2(model, tokenizer, texts, **kwargs):
        rounds.append([t[-2] for t in texts])
        if len(rounds) == 2:
            raise KeyboardInterrupt
        return real_extract(model, tokenizer, texts, **kwargs)

    monkeypatch.setattr(piilab.extract, "extract", killed_in_round_2)
    assert main(argv) == 130  # interrupted in its second round
    assert [json.loads(line)["id"] for line in out.read_text().splitlines()] == ["t0", "t1"]
    with out.open("a") as handle:
        handle.write('{"id": "t2", "lay')  # a line torn by the kill
    rounds.clear()
    monkeypatch.setattr(piilab.extract, "extract", lambda m, t, texts, **kw: rounds.append(
        [x[-2] for x in texts]) or real_extract(m, t, texts, **kw))
    assert main(argv) == 0
    assert rounds == [["2", "3"], ["4"]]  # only what was not written; the torn row again
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == [f"t{i}" for i in range(5)]
    assert all(r["items"][0]["value"] == "Jane Doe" for r in rows)
    assert capsys.readouterr().out == ""
    rounds.clear()
    assert main(argv) == 0 and rounds == []  # all done: nothing decoded, nothing added
    assert len(out.read_text().splitlines()) == 5
    settings = json.loads((tmp_path / "found.jsonl.settings.json").read_text())
    assert settings["model"] == str(tiny_llama_dir.resolve()) and settings["second_look"] == 0.05


def test_cli_reads_the_texts_of_a_data_set_in_any_format_by_id(fixed_answer, tiny_llama_dir, tmp_path,
                                                              capsys, monkeypatch, caplog):
    rows = [{"id": "a", "text": TEXT, "spans": []},
            {"id": "b", "text": "Omar", "spans": [{"start": 0, "end": 4, "label": "NAME", "value": "Omar"}]},
            {"id": "c", "spans": []},
            {"id": "d", "text": " ", "spans": []}]
    data, out = tmp_path / "labelled.jsonl", tmp_path / "found.jsonl"
    write_texts(data, rows)  # c has no text: the reader skips it; d is blank
    argv = ["extract", "--model", str(tiny_llama_dir), "--input", f"spans:{data}", "--device", "cpu"]
    assert main(argv) == 0
    found = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["id"] for r in found] == ["a", "b"]
    assert found[0]["items"][0]["value"] == "Jane Doe" and found[1]["items"] == []  # none in "Omar"
    assert "2 record(s) skipped" in caplog.text and "1 empty text" in caplog.text
    assert "Omar" not in caplog.text  # counted by reason, never shown
    calls = []
    real_extract = piilab.extract.extract
    monkeypatch.setattr(piilab.extract, "extract", lambda m, t, texts, **kw: calls.append(texts)
                        or real_extract(m, t, texts, **kw))
    assert main([*argv, "-o", str(out)]) == 0 and main([*argv, "-o", str(out)]) == 0
    assert len(calls) == 1 and len(out.read_text().splitlines()) == 2  # the rerun resumed: nothing left
    settings = json.loads((tmp_path / "found.jsonl.settings.json").read_text())
    assert settings["input"] == f"spans:{data.resolve()}"
    write_texts(data, [rows[2]])
    assert main(argv) == 2
    assert "no text to search in its spans records" in capsys.readouterr().err


def searched(fixed_answer) -> list[str]:
    """The texts the fake model was prompted with, by their last line (tests below end each
    text with its own)."""
    return [next(t for t in TEXTS if t in prompt) for prompt in fixed_answer.get("prompts", [])]


TEXTS = ("Jane Doe wrote", "Omar Haddad called", "Omar Hadad called", "Ines Ruiz left", "Li Wei came")


def test_cli_output_searches_again_only_the_texts_edited_or_new_since(fixed_answer, tiny_llama_dir,
                                                                      tmp_path, caplog):
    texts, out = tmp_path / "texts.jsonl", tmp_path / "found.jsonl"
    rows = {"a": TEXTS[0], "b": TEXTS[1], "c": TEXTS[3]}
    write_texts(texts, [{"id": k, "text": v} for k, v in rows.items()])
    argv = ["extract", "--model", str(tiny_llama_dir), "--input", str(texts), "-o", str(out),
            "--device", "cpu"]
    assert main(argv) == 0
    first = {row["id"]: row for row in map(json.loads, out.read_text().splitlines())}
    # "b" edited in place, "d" appended: only they are searched
    rows.update(b=TEXTS[2], d=TEXTS[4])
    write_texts(texts, [{"id": k, "text": v} for k, v in rows.items()])
    fixed_answer.clear()
    assert main(argv) == 0
    assert sorted(searched(fixed_answer)) == sorted([TEXTS[2], TEXTS[4]])
    found = [json.loads(line) for line in out.read_text().splitlines()]
    assert [row["id"] for row in found] == ["a", "c", "b", "d"]  # b's old row taken out
    assert found[0] == first["a"] and found[1] == first["c"]
    assert found[2]["input_digest"] != first["b"]["input_digest"]
    assert found[2]["input_digest"] == hashlib.sha256(TEXTS[2].encode()).hexdigest()[:16]
    assert "1 row(s) made from input rows edited since" in caplog.text
    assert not any(text in caplog.text for text in TEXTS)  # counted, never shown
    fresh = tmp_path / "fresh.jsonl"
    assert main([*argv[:-3], str(fresh), "--device", "cpu"]) == 0
    assert sorted(found, key=lambda r: r["id"]) == [json.loads(x) for x in fresh.read_text().splitlines()]
    # "c" cut from the input: its row is kept, and nothing is searched
    before = out.read_text()
    write_texts(texts, [{"id": k, "text": v} for k, v in rows.items() if k != "c"])
    fixed_answer.clear()
    caplog.clear()
    assert main(argv) == 0 and not fixed_answer and out.read_text() == before
    assert "1 row(s) of ids the input no longer has are kept" in caplog.text


def test_cli_output_of_an_earlier_piilab_gets_its_rows_digests_once(fixed_answer, tiny_llama_dir,
                                                                   tmp_path, capsys):
    from helpers import one_line_error

    texts, out = tmp_path / "texts.jsonl", tmp_path / "found.jsonl"
    settings = tmp_path / "found.jsonl.settings.json"
    write_texts(texts, [{"id": "a", "text": TEXTS[0]}, {"id": "b", "text": TEXTS[1]}])
    argv = ["extract", "--model", str(tiny_llama_dir), "--input", str(texts), "-o", str(out),
            "--device", "cpu"]
    assert main(argv) == 0
    now = out.read_text()
    without_digests = "".join(json.dumps({k: v for k, v in json.loads(line).items()
                                          if k != "input_digest"}) + "\n" for line in now.splitlines())
    identity = json.loads(settings.read_text())
    # the fifteenth session's files: the input files' sizes and digests, no digest per row
    out.write_text(without_digests)
    contents = {str(texts.resolve()): {"bytes": texts.stat().st_size,
                                       "sha256": hashlib.sha256(texts.read_bytes()).hexdigest()}}
    settings.write_text(json.dumps({**identity, "input_contents": contents}))
    fixed_answer.clear()
    assert main(argv) == 0 and not fixed_answer
    assert out.read_text() == now and json.loads(settings.read_text()) == identity
    # ... edited since: its rows cannot be told apart, so it is refused as before
    out.write_text(without_digests)
    settings.write_text(json.dumps({**identity, "input_contents": contents}))
    write_texts(texts, [{"id": "a", "text": TEXTS[0]}, {"id": "b", "text": TEXTS[2]}])
    one_line_error(capsys, argv, f"found.jsonl: {texts.resolve()} was edited, cut short or removed")
    assert out.read_text() == without_digests
    # older files had neither: their rows are taken as made from the input as it is
    settings.write_text(json.dumps(identity))
    assert main(argv) == 0 and not fixed_answer
    assert [json.loads(line)["input_digest"] for line in out.read_text().splitlines()] == \
        [hashlib.sha256(text.encode()).hexdigest()[:16] for text in (TEXTS[0], TEXTS[2])]


def test_cli_output_of_a_data_set_folder_resumes_with_new_files(fixed_answer, tiny_llama_dir, tmp_path):
    folder, out = tmp_path / "set", tmp_path / "found.jsonl"
    folder.mkdir()
    write_texts(folder / "1.jsonl", [{"id": "a", "text": TEXT, "spans": []}])
    argv = ["extract", "--model", str(tiny_llama_dir), "--input", f"spans:{folder}", "-o", str(out),
            "--device", "cpu"]
    assert main(argv) == 0
    write_texts(folder / "2.jsonl", [{"id": "b", "text": "Omar Haddad", "spans": []}])
    fixed_answer.clear()
    assert main(argv) == 0 and len(fixed_answer["prompts"]) == 1
    before = out.read_text()
    (folder / "1.jsonl").unlink()
    fixed_answer.clear()
    assert main(argv) == 0 and not fixed_answer and out.read_text() == before


def test_cli_output_refuses_a_file_of_other_settings_or_of_another_program(fixed_answer, tiny_llama_dir,
                                                                           tmp_path, capsys):
    from helpers import one_line_error

    texts, out = tmp_path / "texts.jsonl", tmp_path / "found.jsonl"
    write_texts(texts, [{"id": 1, "text": TEXT}, {"id": "1", "text": TEXT}])  # 1 and "1" differ
    argv = ["extract", "--model", str(tiny_llama_dir), "--input", str(texts), "--output", str(out),
            "--device", "cpu"]
    assert main(argv) == 0
    before = out.read_text()
    fixed_answer.clear()
    assert main([*argv, "--layer", "4"]) == 0  # the last layer by number: the same settings
    assert out.read_text() == before and not fixed_answer  # so nothing searched again
    one_line_error(capsys, [*argv, "--layer", "2", "--second-look", "0"],
                   "found.jsonl: written with other settings (layer, second_look differ)")
    assert out.read_text() == before
    # the twelfth session wrote the last layer as null: the same run
    settings = tmp_path / "found.jsonl.settings.json"
    settings.write_text(json.dumps({**json.loads(settings.read_text()), "layer": None}))
    assert main(argv) == 0 and not fixed_answer and out.read_text() == before
    one_line_error(capsys, [*argv, "--layer", "2"], "(layer differ)")
    other = tmp_path / "other.jsonl"
    other.write_text('{"id": 1}\n')
    one_line_error(capsys, [*argv[:-3], str(other), "--device", "cpu"],
                   "other.jsonl: exists, without other.jsonl.settings.json")
    assert other.read_text() == '{"id": 1}\n'
    write_texts(texts, [{"id": "a", "text": TEXT}, {"text": TEXT}, {"id": "a", "text": "x"}])
    one_line_error(capsys, [*argv[:-3], str(tmp_path / "new.jsonl"), "--device", "cpu"],
                   'texts.jsonl: two rows have the id "a"')
    one_line_error(capsys, ["extract", "--model", str(tiny_llama_dir), TEXT, "-o", str(out)],
                   "--output resumes the rows of a .jsonl or FORMAT:PATH --input")
    # a model retrained at the same path: its rows would mix with the earlier model's
    import shutil

    model = shutil.copytree(tiny_llama_dir, tmp_path / "model")
    write_texts(texts, [{"id": 1, "text": TEXT}])
    again = ["extract", "--model", str(model), "--input", str(texts), "-o", str(tmp_path / "m.jsonl"),
             "--device", "cpu"]
    assert main(again) == 0
    weights = next(model.glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:-4] + b"\0\0\0\1")
    one_line_error(capsys, again, "m.jsonl: written with other settings (model_files differ)")


def test_cli_skips_and_counts_bad_rows_without_logging_them(fixed_answer, tiny_llama_dir, tmp_path,
                                                           capsys, caplog):
    texts = tmp_path / "texts.jsonl"
    write_texts(texts, [{"id": "a", "text": TEXT}, "not json, Jane Doe", ["Jane Doe"],
                        {"id": "b", "body": "Jane Doe"}, {"id": "c", "text": "   "},
                        {"text": TEXT}])
    with caplog.at_level(logging.INFO):
        assert main(["extract", "--model", str(tiny_llama_dir), "--input", str(texts),
                     "--device", "cpu"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["id"] for r in rows] == ["a", "c", 5]  # ids: the row's, else its number from 0
    assert rows[1]["items"] == [] and rows[1]["answers"] == []  # blank: nothing to find
    assert len(fixed_answer["prompts"]) == 2  # and no prompt for it
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert f"{texts}: line 2: malformed JSON" in warnings[0]
    assert warnings[1:] == [f"{texts}: line 3: not a JSON object; row skipped",
                            f"{texts}: line 4: no string field 'text'; row skipped",
                            f"{texts}: 3 row(s) skipped, 3 to search"]
    assert not any("Jane Doe" in r.getMessage() for r in caplog.records)
    write_texts(texts, ["[1]", {"id": "b"}])
    from helpers import one_line_error

    one_line_error(capsys, ["extract", "--model", str(tiny_llama_dir), "--input", str(texts)],
                   "texts.jsonl: no row with a string field 'text'")


def test_cli_runs_a_real_tiny_model_end_to_end(tokenizer, tmp_path, capsys):
    # the default prompt, with its label definitions, needs more than the fixtures' 256 positions
    model = tiny_llama(tokenizer)
    model.config.max_position_embeddings = 1024  # rotary positions: only the config's limit moves
    model_dir = save_model_dir(model, tokenizer, tmp_path / "llama")
    path = tmp_path / "essay.txt"
    path.write_text(TEXT)
    assert main(["extract", "--model", str(model_dir), "--input", str(path), "--layer", "2",
                 "--max-new-tokens", "8", "--device", "cpu"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["layer"] == 2 and len(out["answers"]) == 1
    assert isinstance(out["items"], list) and isinstance(out["invented"], list)


@pytest.mark.parametrize("args,match", [
    (["--layer", "0", TEXT], "layers 1..4"),
    (["--layer", "5", TEXT], "layers 1..4"),
    (["  "], "TEXT is empty"),
    ([], "give a TEXT or --input FILE"),
    (["--second-look", "1", TEXT], "--second-look: the second look's threshold must be a probability in [0, 1), not 1.0"),
    (["--second-look", "-0.1", TEXT], "must be a probability in [0, 1), not -0.1"),
])
def test_cli_errors_are_one_line(tiny_llama_dir, capsys, args, match):
    from helpers import one_line_error

    one_line_error(capsys, ["extract", "--model", str(tiny_llama_dir), "--device", "cpu", *args], match)


def test_a_trained_adapter_prompts_the_same_from_any_directory(tokenizer, tmp_path, monkeypatch, capsys):
    from piilab.train import TrainConfig, train

    model = tiny_llama(tokenizer)
    model.config.max_position_embeddings = 1024  # room for the prompt with its label definitions
    base = save_model_dir(model, tokenizer, tmp_path / "base")
    work, elsewhere = tmp_path / "work", tmp_path / "elsewhere"
    (work / "data").mkdir(parents=True)
    elsewhere.mkdir()
    row = {"source": "t", "prompt": "Find PII: Jane Doe wrote.", "completion": "Jane Doe (NAME)",
           "text": "Jane Doe wrote.", "spans": [], "meta": {}}
    (work / "data" / "train.jsonl").write_text("".join(json.dumps({"id": f"r{i}", **row}) + "\n"
                                                       for i in range(4)))
    (work / "data" / "card.json").write_text(json.dumps({
        "prompt_style": "alpaca", "labels": {"NAME": "a name", "EMAIL": "an email"},
        "config": {"max_chars": 1500, "overlap": 100}}))
    monkeypatch.chdir(work)
    train(TrainConfig(data="data", out="run", model=str(base), max_steps=1, batch_size=4, lora_r=2,
                      save_steps=1000))  # paths relative to the working directory, as users give them
    run = work / "run"
    real, prompts = piilab.layers.decode.generate, []

    def spy(model, tokenizer, texts, layers, **kwargs):
        prompts.append(list(texts))
        return real(model, tokenizer, texts, layers, **kwargs)

    monkeypatch.setattr(piilab.layers.decode, "generate", spy)
    printed, calls = [], []
    for cwd in (work, elsewhere):
        monkeypatch.chdir(cwd)
        assert main(["extract", "--model", str(run), TEXT, "--max-new-tokens", "4", "--device", "cpu",
                     "--plain-decoding"]) == 0  # through the spied generate
        printed.append(capsys.readouterr().out)
        calls.append(prompts[len(sum(calls, [])):])  # this run's calls (cut answers: halves too)
    assert printed[0] == printed[1] and calls[0] == calls[1]
    first = calls[0][0][0]
    assert "EMAIL" in first and "PHONE_NUM" not in first  # training's label set
    assert prompt_settings(run).style == "alpaca"

    # a run folder of an older piilab (no prompt_settings.json, a relative data path) still
    # finds its card through the absolute path training recorded
    (run / "prompt_settings.json").unlink()
    saved = json.loads((run / "train_config.json").read_text())
    saved["config"]["data"] = "data"
    (run / "train_config.json").write_text(json.dumps(saved))
    settings = prompt_settings(run)
    assert (settings.style, settings.labels, settings.max_chars) == ("alpaca", ("NAME", "EMAIL"), 1500)


def test_cli_speedups_give_plain_decodings_answers(tokenizer, tmp_path, capsys):
    model = tiny_llama(tokenizer, seed=1, initializer_range=0.3)  # varied output: drafts rejected
    model.config.max_position_embeddings = 1024
    model_dir = save_model_dir(model, tokenizer, tmp_path / "llama")
    path = tmp_path / "texts.jsonl"
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in [TEXT, "Omar", TEXT[:40]]))
    outputs = []
    for flags in ([], ["--plain-decoding"], ["--draft-tokens", "0", "--no-shared-start"]):
        assert main(["extract", "--model", str(model_dir), "--input", str(path), "--device", "cpu",
                     "--max-new-tokens", "12", "--batch-size", "2", *flags]) == 0
        outputs.append([json.loads(line)["answers"] for line in capsys.readouterr().out.splitlines()])
    assert outputs[0] == outputs[1] == outputs[2] and len(outputs[0]) == 3


def test_cli_refuses_negative_draft_tokens(tiny_llama_dir, capsys):
    from helpers import one_line_error

    one_line_error(capsys, ["extract", "--model", str(tiny_llama_dir), "--device", "cpu",
                            "--draft-tokens", "-1", TEXT], "--draft-tokens must be 0 or more")


def test_cli_validators_complete_the_models_items_unless_turned_off(tiny_llama_dir, monkeypatch, capsys):
    text = "Write to jane.doe@example.com, card 4111 1111 1111 1111, or call Jane at home."
    monkeypatch.setattr(piilab.extract, "decode_answers",
                        lambda model, tokenizer, prompts, layer, **kw: (
                            ["jane.doe (EMAIL)\nJane (PHONE_NUM)"] * len(prompts), [], set()))

    def items(*flags):
        assert main(["extract", "--model", str(tiny_llama_dir), text, "--device", "cpu", *flags]) == 0
        out = json.loads(capsys.readouterr().out)
        return [(i["value"], i["label"], i.get("found_by")) for i in out["items"]], out["rejected"]

    assert items() == ([("jane.doe@example.com", "EMAIL", None), ("4111 1111 1111 1111", "ID_NUM", "pattern")],
                       [{"value": "Jane", "label": "PHONE_NUM"}])
    assert items("--validators", "none") == ([("jane.doe", "EMAIL", None), ("Jane", "PHONE_NUM", None)], [])
    from helpers import one_line_error

    one_line_error(capsys, ["extract", "--model", str(tiny_llama_dir), text, "--validators", "guess"],
                   "--validators: unknown guess")


def test_cli_validators_plus_postal_adds_address_blocks_to_the_defaults(tiny_llama_dir, monkeypatch, capsys):
    text = "Ship to:\nHauptstraße 48a\n71032 Böblingen\n\nMail jane.doe (at) example.com"
    monkeypatch.setattr(piilab.extract, "decode_answers",
                        lambda model, tokenizer, prompts, layer, **kw: (["None"] * len(prompts), [], set()))

    def items(*flags):
        assert main(["extract", "--model", str(tiny_llama_dir), text, "--device", "cpu", *flags]) == 0
        return [(i["value"], i["label"], i.get("found_by")) for i in json.loads(capsys.readouterr().out)["items"]]

    address, email = ("Hauptstraße 48a\n71032 Böblingen", "STREET_ADDRESS", "pattern"), \
        ("jane.doe (at) example.com", "EMAIL", "pattern")
    assert items() == [email]  # the defaults: `complete` finds the address written with "(at)"
    assert items("--validators", "+postal") == [address, email]
    assert items("--validators", "postal") == [address]


@pytest.fixture
def extract_calls(monkeypatch) -> list[dict]:
    """The keyword arguments of each call `piilab extract` makes to piilab.extract.extract, which
    stops there with an error (exit code 2)."""
    import piilab.extract as extract_module
    from piilab.errors import PiilabError

    calls = []

    def spy(*args, **kwargs):
        calls.append(kwargs)
        raise PiilabError("stop here")

    monkeypatch.setattr(extract_module, "extract", spy)
    return calls


def test_cli_decodes_in_batches_of_extracts_default_unless_told(tokenizer, tmp_path, extract_calls):
    from piilab.extract import BATCH_SIZE

    model_dir = save_model_dir(tiny_llama(tokenizer), tokenizer, tmp_path / "llama")
    for flags in ([], ["--batch-size", "3"]):
        assert main(["extract", "Omar", "--model", str(model_dir), "--device", "cpu", *flags]) == 2
    assert [call["batch_size"] for call in extract_calls] == [BATCH_SIZE, 3]


def test_cli_takes_the_second_look_the_adapter_folder_asks_for_unless_told(tokenizer, tmp_path, capsys,
                                                                          extract_calls):
    from helpers import one_line_error

    from piilab.second_look import DEFAULTS_FILE, THRESHOLD, save_threshold

    model_dir = save_model_dir(tiny_llama(tokenizer), tokenizer, tmp_path / "llama")
    run = ["extract", "Omar", "--model", str(model_dir), "--device", "cpu"]
    assert main(run) == 2  # no file: piilab's default
    save_threshold(model_dir, 0)
    assert main(run) == 2 and main([*run, "--second-look", "0.1"]) == 2
    assert [call["second_look"] for call in extract_calls] == [THRESHOLD, 0.0, 0.1]
    capsys.readouterr()
    (model_dir / DEFAULTS_FILE).write_text('{"second_look": 2}')
    one_line_error(capsys, run, f"{model_dir / DEFAULTS_FILE}, field 'second_look': the second "
                                "look's threshold must be a probability in [0, 1), not 2")
    (model_dir / DEFAULTS_FILE).write_text('{"threshold": 0.1}')
    one_line_error(capsys, run, "no field 'second_look'")


def test_answer_seeds_are_what_an_answer_says_besides_its_values():
    from piilab.data.answer import format_answer
    from piilab.answer_drafts import answer_seeds

    seeds = answer_seeds(["NAME", "EMAIL"])
    assert seeds == ["None", " (EMAIL)\n", " (NAME)\n"]  # the first label last: drafted after " ("
    answer = format_answer([("Jane Doe", "NAME"), ("jane@example.com", "EMAIL")]) + "\n"
    assert all(seed in answer or seed == format_answer([]) for seed in seeds)


def test_prepared_calls_answer_as_plain_calls_and_prepare_only_once(tokenizer, monkeypatch):
    """Under `prepared`, calls reuse one swap of the linear layers and one shared start."""
    from peft import LoraConfig, get_peft_model

    import piilab.layers.linears
    import piilab.layers.lookup
    from piilab.errors import PiilabError
    from piilab.extract import SpeedUps, prepared
    from piilab.layers.decode import Decoding
    from piilab.models.prompts import format_for

    model = get_peft_model(tiny_llama(tokenizer, seed=2, max_position_embeddings=1024),
                           LoraConfig(r=4, target_modules="all-linear", init_lora_weights=False)).eval()
    texts = [TEXT, "Call Ann Lee at 555-0100 or ann@lee.example, she said."]

    def answers(text: str) -> list[str]:
        [result] = extract(model, tokenizer, [text], settings=prompt_settings(None),
                           prompt_format=format_for(tokenizer), decoding=Decoding(max_new_tokens=12),
                           progress=False, second_look=0.05)
        return result.answers + result.second_look

    want = [answers(text) for text in texts]
    merged, starts = [], []
    effective_weight, forward = piilab.layers.linears.effective_weight, piilab.layers.lookup._Run.forward
    monkeypatch.setattr(piilab.layers.linears, "effective_weight",
                        lambda module: merged.append(module) or effective_weight(module))
    monkeypatch.setattr(piilab.layers.lookup._Run, "forward", lambda run, ids, pos, cache, held: (
        starts.append(ids.shape) if held is None else None) or forward(run, ids, pos, cache, held))
    with prepared(model):
        assert [answers(text) for text in texts * 2] == want * 2
        with pytest.raises(PiilabError, match="linear layers are merged copies here"):
            extract(model, tokenizer, [TEXT], speedups=SpeedUps(linear="bfloat16"), progress=False)
    linears = 7 * model.config.num_hidden_layers
    assert len(merged) == linears  # each decoder linear layer merged once, for four calls
    assert len(starts) == 1  # and the shared start run through the model once
    assert not hasattr(model, "_piilab_prefixes") and not hasattr(model, "_piilab_linears")
    assert [answers(text) for text in texts] == want  # the model whole again
    assert len(merged) == 3 * linears and len(starts) == 3  # a call alone prepares its own


def test_extract_decoding_waits_its_turn_on_a_model_another_call_holds(tokenizer):
    import threading

    from piilab.layers.decode import Decoding
    from piilab.models.arch import model_lock

    model = tiny_llama(tokenizer, seed=2, max_position_embeddings=1024).eval()
    done = []
    worker = threading.Thread(target=lambda: done.append(
        extract(model, tokenizer, [TEXT], layer=2, progress=False,
                decoding=Decoding(max_new_tokens=2))))
    linear = model.model.layers[0].mlp.down_proj
    with model_lock(model):  # another call in flight: this one waits, and leaves the model alone
        worker.start()
        worker.join(1.0)
        assert worker.is_alive() and not done
        assert model.model.layers[0].mlp.down_proj is linear  # no merged copies swapped in under it
    worker.join(30)
    assert not worker.is_alive() and len(done) == 1


def test_prepared_from_several_threads_is_undone_by_the_last_exit_after_the_call_in_flight(tokenizer):
    import threading

    from piilab.extract import prepared
    from piilab.models.arch import model_lock

    model = tiny_llama(tokenizer, seed=2).eval()
    leave = [threading.Event(), threading.Event()]
    entered = [threading.Event(), threading.Event()]

    def service(k: int) -> None:
        with prepared(model):
            entered[k].set()
            leave[k].wait(10)

    workers = [threading.Thread(target=service, args=(k,)) for k in (0, 1)]
    for worker, inside in zip(workers, entered):
        worker.start()
        assert inside.wait(10)
    swapped = model.model.layers[0].mlp.down_proj
    leave[0].set()
    workers[0].join(10)
    assert hasattr(model, "_piilab_linears") and model.model.layers[0].mlp.down_proj is swapped
    with model_lock(model):  # a call in flight: the last exit waits for it
        leave[1].set()
        workers[1].join(0.5)
        assert workers[1].is_alive() and hasattr(model, "_piilab_prefixes")
    workers[1].join(10)
    assert not workers[1].is_alive()
    assert not hasattr(model, "_piilab_linears") and not hasattr(model, "_piilab_prefixes")
    assert type(model.model.layers[0].mlp.down_proj) is torch.nn.Linear  # the model whole again


@pytest.mark.parametrize("native,linear,device,said", [
    (True, "merged", "cpu", "--linear bfloat16 extracts about"),
    (False, "bfloat16", "cpu", "emulated, slower"),
    (False, "merged", "cpu", None),
    (True, "bfloat16", "cpu", None),
    (True, "exact", "cpu", None),
    (False, "bfloat16", "cuda", None),
])
def test_extract_says_when_another_linear_precision_suits_the_cpu(monkeypatch, native, linear, device, said):
    import piilab.runtime
    from piilab.cli.extract import linear_advice

    monkeypatch.setattr(piilab.runtime, "cpu_supports_bf16", lambda: native)
    advice = linear_advice(linear, device)
    assert (advice is None) == (said is None)
    if said:
        assert said in advice[1]
