"""Second look: the ways on a greedy answer did not take are noted between items only, each is
decoded one line further under the copy constraint, and its new items join the answer's."""

import pytest
import torch
from tiny import tiny_llama

from piilab.data.answer_grammar import AnswerGrammar
from piilab.errors import PiilabError
from piilab.extract import extract
from piilab.layers.constrain import Notes
from piilab.layers.decode import Decoding, generate
from piilab.models.prompts import PromptFormat
from piilab.pii_prompt import PromptSettings
from piilab.second_look import branches, join, line
from piilab.shapes import on_items

pytestmark = pytest.mark.usefixtures("one_thread")

TEXT = "Jane Doe wrote to jane.doe@example.com about order 55-123.\nCall +1 555 010 2000 today."
LABELS = ("NAME", "EMAIL", "PHONE_NUM")
FORMAT = PromptFormat(kind="plain", template="{prompt} Answer:")
SETTINGS = PromptSettings(labels=LABELS)
EOS = "<|im_end|>"


def look(model, tokenizer, second_look: float):
    """extract's one Extraction of TEXT (few new tokens: the tiny model's window is 256)."""
    return extract(model, tokenizer, [TEXT], layer=4, settings=SETTINGS, prompt_format=FORMAT,
                   decoding=Decoding(max_new_tokens=8), progress=False, second_look=second_look)[0]


def scripted(tokenizer, runner_up: float, then: str = "Cal"):
    """A tiny llama that answers "Jane Doe (NAME)" after " Answer:" and then ends, with a new line
    as its second choice at the end, `runner_up` logits of the head's scale behind EOS (about 5.7
    logits each); after that new line it writes "Call (NAME)" (`then` "P": "P", absent from the
    text, so the constraint must override it).

    Each token below gets a basis vector as its embedding and its successors unembedding rows
    along it (as tests/layers/test_constrain.py's `scripted`), so the model's next token depends
    on the last token only."""
    steps = {":": {"Jane": 30}, "Jane": {" ": 30}, " ": {"Do": 30}, "Do": {"e": 30}, "e": {" (": 30},
             " (": {"NAME": 30}, "NAME": {")": 30}, ")": {EOS: 30, "\n": 30 - runner_up},
             "\n": {then: 30}, "Cal": {"l": 30}, "l": {" (": 30}}
    model = tiny_llama(tokenizer, seed=0, tie_word_embeddings=False)
    token = tokenizer.convert_tokens_to_ids
    with torch.no_grad():
        embed, head = model.get_input_embeddings().weight, model.get_output_embeddings().weight
        for j, (piece, successors) in enumerate(steps.items()):
            ids = tokenizer.encode(piece) if piece != EOS else [token(EOS)]
            assert len(ids) == 1, piece
            embed[ids[0]] = 0.0
            embed[ids[0], j] = 10.0
            for successor, weight in successors.items():
                head[tokenizer.encode(successor)[0] if successor != EOS else token(EOS), j] = weight
    return model


def noted(model, tokenizer, threshold: float, **decoding) -> dict:
    notes = Notes(threshold)
    answers = generate(model, tokenizer, [f"Find it. {TEXT} Answer:"], [4],
                       decoding=Decoding(max_new_tokens=30, **decoding), answers=[(TEXT, LABELS)],
                       notes=notes, progress=False)[4]
    return answers[0], notes.ways_on


def test_a_likely_new_line_where_the_answer_ended_is_noted(tokenizer):
    answer, found = noted(scripted(tokenizer, runner_up=0.2), tokenizer, threshold=0.05)
    assert answer == "Jane Doe (NAME)"
    assert list(found) == [0] and list(found[0]) == [b"Jane Doe (NAME)\n"]  # not inside the value
    assert 0.1 < found[0][b"Jane Doe (NAME)\n"] < 0.5


def test_ways_on_under_the_threshold_and_sampled_answers_are_not_noted(tokenizer):
    model = scripted(tokenizer, runner_up=0.2)
    assert noted(model, tokenizer, threshold=0.6)[1] == {}
    assert noted(model, tokenizer, threshold=0.05, sample=True, seed=1)[1] == {}


def test_the_prompts_whose_answer_the_constraint_overrode_are_noted(tokenizer):
    notes = Notes()
    prompts = [f"Find it. {TEXT} Answer:", "Find it. Jane Doe. Answer:"]
    generate(scripted(tokenizer, runner_up=0.2), tokenizer, prompts, [4], notes=notes,
             answers=[(TEXT, LABELS), ("Doe", LABELS)], progress=False)
    assert notes.overridden == {1} and notes.ways_on == {}  # "Jane" is not in "Doe"


def test_prompt_lookup_notes_what_plain_decoding_notes(tokenizer):
    from piilab.layers.lookup import lookup_generate

    model = scripted(tokenizer, runner_up=0.2)
    want = noted(model, tokenizer, threshold=0.05)[1]
    notes = Notes(0.05)
    lookup_generate(model, tokenizer, [f"Find it. {TEXT} Answer:"], layer=4,
                    decoding=Decoding(max_new_tokens=30), answers=[(TEXT, LABELS)],
                    notes=notes, progress=False)
    assert notes.ways_on.keys() == want.keys()
    assert notes.ways_on[0] == pytest.approx(want[0], rel=1e-4)


def test_an_answer_decoded_on_from_what_was_written_still_only_copies(tokenizer):
    model = tiny_llama(tokenizer, seed=3, initializer_range=0.3)  # prefers nothing valid
    written = "Jane Doe (NAME)\n"
    more = generate(model, tokenizer, [f"Find it. {TEXT} Answer:{written}"], [4],
                    decoding=Decoding(max_new_tokens=30), answers=[(TEXT, LABELS, written)],
                    progress=False)[4][0]
    grammar = AnswerGrammar(TEXT, LABELS)
    assert grammar.advance(grammar.start(), (written + more).encode()) is not None
    with pytest.raises(PiilabError, match="given beginning does not copy"):
        generate(model, tokenizer, ["Find it. Answer:Paris"], [4], answers=[(TEXT, LABELS, "Paris")],
                 progress=False)


def test_extract_adds_the_second_looks_new_items_and_marks_them(tokenizer):
    model = scripted(tokenizer, runner_up=0.2)
    plain, looked = look(model, tokenizer, 0.0), look(model, tokenizer, 0.05)
    assert [(i["value"], i["label"]) for i in plain.items] == [("Jane Doe", "NAME")]
    assert plain.second_look == []
    assert looked.answers == plain.answers  # the answer itself is the greedy one
    assert looked.second_look == ["Call (NAME)"]
    assert [(i["value"], i["label"], i.get("found_by")) for i in looked.items] == [
        ("Jane Doe", "NAME", None), ("Call", "NAME", "second look")]
    # a line the constraint had to force is not the model's: dropped
    forced = look(scripted(tokenizer, runner_up=0.2, then="P"), tokenizer, 0.05)
    assert forced.second_look == [] and forced.items == plain.items
    # a way on less likely than the threshold gets no second look
    unlikely = scripted(tokenizer, runner_up=1.5)
    assert look(unlikely, tokenizer, 0.05).second_look == []


def test_branches_skip_none_answers_and_split_characters_most_likely_first():
    notes = Notes(0.05)
    for prompt, written, probability, tokens in [
            (0, b"A (NAME)\n", 0.1, (1, 2)), (0, b"A (NAME)\nB", 0.3, (1, 2, 3)),
            (0, b"A (NAME)\nC", 0.05, (1, 2, 4)), (1, b"X", 0.5, (5,)),
            (2, b"A (NAME)\n\xc3", 0.4, (1, 6))]:
        notes.way_on(prompt, written, probability, tokens)
    answers = ["A (NAME)", "None", "A (NAME)"]
    assert [(b.prompt, b.written, b.tokens) for b in branches(answers, notes)] == [
        (0, "A (NAME)\nB", (1, 2, 3)), (0, "A (NAME)\n", (1, 2))]
    assert line("A (NAME)\nB", "ob (NAME)") == "Bob (NAME)"
    assert line("A (NAME)\n", "Bob (NAME)") == "Bob (NAME)"


def item(value, label, *spans):
    return {"value": value, "label": label, "spans": [{"start": s, "end": e} for s, e in spans]}


def test_the_greedy_answer_wins_over_the_second_look():
    placed = [item("Jane Doe", "NAME", (0, 8))]
    looked = [item("Jane Doe", "USERNAME", (0, 8)),  # the same span, another label
              item("Jane", "NAME", (0, 4), (90, 94)),  # once inside "Jane Doe", once alone
              item("Call", "NAME", (59, 63)),
              item("Call +1", "PHONE_NUM", (59, 66))]  # overlaps the kept "Call"
    assert join(placed, looked) == [placed[0], {**item("Jane", "NAME", (90, 94)), "found_by": "second look"},
                                    {**looked[2], "found_by": "second look"}]


def test_validators_keep_the_second_looks_mark():
    text = "Mail Jane at jane.doe@example.com or call Call."
    items = [item("Jane", "NAME", (5, 9)), {**item("Call", "NAME", (42, 46)), "found_by": "second look"}]
    out, rejected = on_items(text, items, ("extend", "check", "complete"))
    assert rejected == []
    assert [(i["value"], i.get("found_by")) for i in out] == [
        ("Jane", None), ("jane.doe@example.com", "pattern"), ("Call", "second look")]


@pytest.mark.parametrize(("seed", "pack_when_wider"), [(0, 2), (1, 2), (2, 2), (0, 1), (1, 1)])
@pytest.mark.parametrize("scale", [0.3, 1.0])
def test_forked_branches_are_what_plain_decoding_prefills(tokenizer, seed, scale, pack_when_wider,
                                                          monkeypatch):
    """Prompt-lookup decoding forks each way on from its row's cache; plain decoding prefills the
    prompt and the answer's tokens up to it. Both must decode the same continuation, in batches
    where a row's branches take its place, places of rows that ended, and new places (with the
    cache packed at the default, or at every pass that leaves a hidden column)."""
    from piilab.extract import SpeedUps, decode_answers
    from piilab.pii_prompt import pii_prompt
    from piilab.layers import cache, lookup

    monkeypatch.setattr(cache, "PACK_WHEN_WIDER", pack_when_wider)

    texts = [TEXT, "Call +1 555 010 2000 or visit https://example.org/~jdoe today.",
             "The student Ana Silva lives at 12 Oak Street, Springfield.",
             "My username is cool_cat_42 and my ID is A1234567.", "Jane wrote. Ana Silva called."]
    settings = PromptSettings(labels=(*LABELS, "USERNAME", "ID_NUM"))
    prompts = [pii_prompt(tokenizer, text, settings, FORMAT) for text in texts]
    rules = [(text, settings.labels) for text in texts]
    model = tiny_llama(tokenizer, seed=seed, initializer_range=scale, max_position_embeddings=1024)
    places = []
    fork = lookup._fork
    monkeypatch.setattr(lookup, "_fork", lambda cache, held, rows, *rest: places.append(rows)
                        or fork(cache, held, rows, *rest))
    got = {}
    for name, speedups in [("fork", SpeedUps()), ("plain", SpeedUps.off())]:
        answers, found, cut = decode_answers(
            model, tokenizer, prompts, 4, lens="norm", decoding=Decoding(max_new_tokens=24),
            batch_size=3, add_special_tokens=False, progress=False, speedups=speedups,
            rules=rules, labels=settings.labels, notes=Notes(1e-4))
        got[name] = answers, sorted((b.prompt, b.written, b.tokens, b.continuation, b.overridden)
                                    for b in found), cut
    assert got["fork"] == got["plain"]
    branches = got["fork"][1]
    assert len(branches) >= 8 and all(b[3] for b in branches)  # every branch wrote on
    assert places  # rows ended with branches inside the stream
