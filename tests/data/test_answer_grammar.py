"""The answer automaton: exactly the answers that copy spans of the text and name labels of the set."""

import random
import re

import pytest

from piilab.data.answer import parse_answer_counted
from piilab.data.answer_grammar import AnswerGrammar

TEXT = ("Jane Doe (jane@example.org) lives at 12 Oak Street,\n  Springfield.\n"
        "Call (555) 010-2000 or write to Schönhauser  Allee 112.")
LABELS = ("NAME", "EMAIL", "PHONE_NUM", "STREET_ADDRESS")


def walk(grammar, answer: str):
    """The state after the answer's UTF-8 bytes fed one byte at a time (None once invalid)."""
    state = grammar.start()
    for byte in answer.encode("utf-8"):
        state = grammar.advance(state, bytes([byte]))
        if state is None:
            return None
    return state


def complete(grammar, answer: str) -> bool:
    state = walk(grammar, answer)
    return state is not None and grammar.accepting(state)


@pytest.mark.parametrize("answer", [
    "None",
    "Jane Doe (NAME)",
    "Jane Doe (NAME)\njane@example.org (EMAIL)",
    "12 Oak Street, Springfield (STREET_ADDRESS)",        # a line break and indent as one space
    "12 Oak Street,\n  Springfield (STREET_ADDRESS)",      # not the answer format: see below
    "(555) 010-2000 (PHONE_NUM)",                          # parentheses inside the value
    "Schönhauser  Allee 112 (STREET_ADDRESS)",             # a double space kept as it is
    "Schönhauser Allee 112 (STREET_ADDRESS)",              # ... or written as one
    " Jane (NAME)",                                        # one leading space (SentencePiece)
    "Jane (NAME)\n",                                       # a final newline
])
def test_answers_that_copy_the_text_are_accepted(answer):
    if "\n  " in answer:  # a value never holds a line break: the line must end with its label
        assert walk(AnswerGrammar(TEXT, LABELS), answer) is None
        return
    assert complete(AnswerGrammar(TEXT, LABELS), answer)


@pytest.mark.parametrize("answer,dies_at", [
    ("John Doe (NAME)", "Jo"),                   # a value absent from the text
    ("Jane Doe (SSN)", "Jane Doe (SS"),          # a label outside the set (S: STREET_...)
    ("Jane Doe (USERNAME)", "Jane Doe (U"),
    ("Jane Doe (NAME) ", "Jane Doe (NAME) "),    # nothing after the label but a newline
    ("None\nJane (NAME)", "None\n"),             # None is the whole answer or nothing
    ("Jane (NAME)\nNone", "Jane (NAME)\nN"),     # (a text without "N" in it)
    ("Jane  Doe (NAME)", "Jane  "),              # two spaces where the text has one
    ("  Jane (NAME)", "  "),                     # at most one leading space
    ("Schönhäuser (NAME)", "Schönh\xe4"),        # a miscopied accented letter
    ("Jane Doe(NAME)", "Jane Doe("),             # the format's " (" before the label
])
def test_answers_that_do_not_copy_the_text_die_where_they_leave_it(answer, dies_at):
    grammar = AnswerGrammar(TEXT, LABELS)
    assert walk(grammar, dies_at[:-1]) is not None
    assert walk(grammar, dies_at) is None
    assert not complete(grammar, answer)


def test_partial_lines_are_valid_prefixes_but_not_complete_answers():
    grammar = AnswerGrammar(TEXT, LABELS)
    for prefix in ("Jane", "Jane Doe (", "Jane Doe (NA", "Non"):
        assert walk(grammar, prefix) is not None and not complete(grammar, prefix)


def test_a_character_split_across_tokens_waits_for_its_last_byte():
    grammar = AnswerGrammar(TEXT, LABELS)
    state = grammar.advance(grammar.start(), "Sch".encode() + "ö".encode()[:1])
    assert state is not None and state.pending == "ö".encode()[:1]
    assert not grammar.accepting(state)
    assert grammar.advance(state, "ö".encode()[1:] + b"n") is not None
    assert grammar.advance(state, "é".encode()[1:]) is None  # \xc3\xa9: é is not in the text
    assert grammar.advance(grammar.start(), b"\xff") is None  # never UTF-8


def test_completions_lead_to_an_answer_that_may_end():
    grammar = AnswerGrammar(TEXT, LABELS)
    state = walk(grammar, "Jane Doe")
    assert " (" in grammar.completions(state)
    state = walk(grammar, "Jane Doe (PHONE")
    assert grammar.completions(state) == ["_NUM)"]
    assert complete(grammar, "Jane Doe (PHONE_NUM)")


def collapse(text: str) -> str:
    return re.sub(r"\s+", " ", text)


def random_walk(grammar, rng: random.Random, alphabet: str, steps: int = 60):
    """An answer built by choosing, at random, characters that keep it valid; and its last state."""
    answer, state = "", grammar.start()
    for _ in range(steps):
        options = [(c, s) for c in alphabet
                   if (s := grammar.advance(state, c.encode("utf-8"))) is not None]
        if grammar.accepting(state) and (not options or rng.random() < 0.1):
            break
        char, state = rng.choice(options)  # a state that may not end always goes on
        answer += char
    return answer, state


@pytest.mark.parametrize("seed", range(6))
def test_every_answer_the_automaton_allows_parses_into_copies_of_the_text(seed):
    rng = random.Random(seed)
    words = ["Ana", "Silva", "ana@x.io", "12", "Oak", "St.", "(555)", "Zoë", "None", "+1", "Müller"]
    text = "".join(rng.choice(words) + rng.choice([" ", "  ", "\n", ", "]) for _ in range(12))
    labels = rng.sample(LABELS, 2)
    grammar = AnswerGrammar(text, labels)
    alphabet = "".join(sorted(set(text + "".join(labels) + " ()\nNoneXYZ#é")))
    ended = 0
    for _ in range(30):
        answer, state = random_walk(grammar, rng, alphabet)
        items, malformed = parse_answer_counted(answer)
        if grammar.accepting(state):  # a finished answer: every line parses
            ended += 1
            assert malformed == 0 and (items or answer == "None"), answer
        else:  # cut by the step limit: only its last line may be unfinished
            assert malformed <= 1
        for value, label in items:
            assert label in labels
            assert collapse(value) in collapse(text), (value, text)
    assert ended >= 5  # the walks do finish answers
