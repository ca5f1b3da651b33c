"""Drafts of what an answer says besides the text's words: the label guessed from a value's shape."""

import pytest

from piilab.answer_drafts import LabelGuess, label_by_shape

LABELS = ("NAME", "EMAIL", "USERNAME", "ID_NUM", "PHONE_NUM", "URL_PERSONAL", "STREET_ADDRESS")


@pytest.mark.parametrize("value, label", [
    ("Jane Doe", "NAME"),
    ("jane.doe@example.com", "EMAIL"),
    ("https://example.org/~jdoe", "URL_PERSONAL"),
    ("+1 555 010 2000", "PHONE_NUM"),
    ("12 Oak Street, Springfield", "STREET_ADDRESS"),
    ("A1234567", "ID_NUM"),
    ("cool_cat_42", "USERNAME"),
    (" kwasi ", "USERNAME"),  # one word in lower case; spaces around a value do not count
])
def test_a_value_s_shape_suggests_its_label(value, label):
    assert label_by_shape(value, LABELS) == label


def test_no_guess_outside_the_answer_s_labels():
    assert label_by_shape("jane.doe@example.com", ["NAME"]) is None
    assert label_by_shape("Jane Doe", ["EMAIL"]) is None


def test_after_a_value_and_its_opening_bracket_the_label_its_shape_suggests_is_drafted(tokenizer):
    guess = LabelGuess(tokenizer, LABELS)
    encode = lambda text: tokenizer.encode(text, add_special_tokens=False)  # noqa: E731
    answer = encode("Jane Doe (NAME)\njane@example.com (")
    assert tokenizer.decode(guess(answer)) == "EMAIL)\n"
    assert guess(encode("Jane Doe (")) == encode(" (NAME)")[1:] + encode("\n")
    assert guess(encode("Jane Doe")) is None  # not at a label: prompt lookup drafts
    assert guess([]) is None
    assert LabelGuess(tokenizer, ["NAME"])(answer) is None  # EMAIL is not among the labels
