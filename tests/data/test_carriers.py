"""Real prose as carriers: composed PII sentences inserted into real texts (piilab.data.carriers)."""

import json

import pytest

from piilab.cli import main
from piilab.data.build import BuildConfig
from piilab.data.carriers import boundaries, carriers, insert
from piilab.data.records import Document, Span
from piilab.errors import PiilabError

MAIL = Document(
    "mail:1",
    "The build broke again. Nobody knows why!\n\nI asked Jim Park about it. He will look.\n\nJim",
    [Span(50, 58, "NAME", "Jim Park"), Span(84, 87, "NAME", "Jim")],
    "mail",
    {"origin": "test"},
)


def test_boundaries_are_sentence_and_paragraph_starts_before_the_last_paragraph():
    places = boundaries(MAIL.text, MAIL.spans)
    text = MAIL.text
    assert (0, "start") in places
    assert (text.index("I asked"), "paragraph") in places
    assert (text.index(" Nobody"), "sentence") in places and (text.index(" He will"), "sentence") in places
    # nothing in the sign-off paragraph, nothing after it
    assert all(at < text.rindex("Jim") for at, _ in places)


def test_a_boundary_inside_a_span_is_never_offered():
    doc = Document("x", "Write to Dr. Who Jones now. Thanks.", [Span(9, 22, "NAME", "Dr. Who Jones")], "mail")
    assert all(not 9 < at < 22 for at, _ in boundaries(doc.text, doc.spans))
    assert (doc.text.index(" Thanks"), "sentence") in boundaries(doc.text, doc.spans)


@pytest.mark.parametrize("kind", ["start", "paragraph", "sentence"])
def test_insert_keeps_every_span_exact_and_the_real_text_whole(kind):
    at = {"start": 0, "paragraph": MAIL.text.index("I asked"), "sentence": MAIL.text.index(" He will")}[kind]
    sentence = "Call me on 555 0100."
    text, spans = insert(MAIL, at, kind, sentence, [Span(11, 19, "PHONE_NUM", "555 0100")])
    assert all(text[s.start:s.end] == s.value for s in spans)
    assert spans == sorted(spans)
    assert {(s.label, s.value) for s in spans} == {("NAME", "Jim Park"), ("NAME", "Jim"), ("PHONE_NUM", "555 0100")}
    piece = f" {sentence}" if kind == "sentence" else f"{sentence}\n\n"
    assert text.replace(piece, "", 1) == MAIL.text


def test_carriers_are_reproducible_exact_and_grouped_with_their_real_text():
    texts = [MAIL, Document("mail:2", "Short note. See you soon.", [], "mail", {})]
    made = list(carriers(texts, 5, seed=3, locales=["en_GB", "de_DE"]))
    assert [d.text for d in made] == [d.text for d in carriers(texts, 5, seed=3, locales=["en_GB", "de_DE"])]
    assert [d.text for d in made] != [d.text for d in carriers(texts, 5, seed=4, locales=["en_GB", "de_DE"])]
    assert len({d.id for d in made}) == 5 and {d.meta["split_group"] for d in made} == {"mail:1", "mail:2"}
    for doc in made:
        real = next(t for t in texts if t.id == doc.meta["split_group"])
        assert doc.source == "mail" and doc.meta.get("origin") == real.meta.get("origin")
        assert all(doc.text[s.start:s.end] == s.value for s in doc.spans)
        added = [s for s in doc.spans if (s.label, s.value) not in {(r.label, r.value) for r in real.spans}]
        assert added, "every carrier sentence names a PII value"
        assert doc.meta["carrier"]["frames"][0].startswith("carry.sentence.")


def test_a_build_keeps_each_real_text_and_its_carriers_on_one_side(tmp_path):
    out = tmp_path / "carry"
    assert main(["data", "build", "--real", "mail", "--carriers", "900", "--test-size", "0.2", "--out", str(out)]) == 0
    rows = {split: [json.loads(line) for line in (out / f"{split}.jsonl").open()] for split in ("train", "test")}
    group = {split: {r["id"].split("+carry")[0] for r in rows[split]} for split in rows}
    assert not group["train"] & group["test"]
    made = [r for split in rows.values() for r in split if "+carry" in r["id"]]
    assert len(made) == 900 and {r["source"] for r in made} == {"mail"}
    # the records say where each sentence went and which real text carries it
    assert all(r["meta"]["split_group"] == r["id"].split("+carry")[0] for r in made)
    assert {r["meta"]["carrier"]["kind"] for r in made} <= {"start", "paragraph", "sentence"}
    card = json.loads((out / "card.json").read_text())
    assert card["config"]["carriers"] == 900 and card["sources"]["spans"]["records_in"] == 812 + 900


def test_carriers_need_a_real_set():
    with pytest.raises(PiilabError, match="--carriers needs --real"):
        BuildConfig(out="x", synthetic=5, carriers=10)


def test_no_carrier_frame_can_say_a_word_twice_in_a_row():
    """Every way to fill a frame's [a|b] choices (slots left as they are): no "about this this
    morning" (a choice's end meeting the next choice's start)."""
    import itertools
    import re

    from piilab.data.compose import _CHOICE
    from piilab.data.people import load_yaml

    doubled = re.compile(r"\b(\w+)\s+\1\b", re.IGNORECASE)
    for frame in load_yaml("carry.yaml")["sentence"]:
        options = [m[1].split("|") for m in _CHOICE.finditer(frame)]
        for picks in itertools.product(*options):
            filled = iter(picks)
            sentence = _CHOICE.sub(lambda m: next(filled), frame)
            assert not doubled.search(sentence), sentence
