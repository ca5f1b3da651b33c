"""What a PII answer says besides the text's words: drafts for prompt lookup.

An answer line is a value copied from the text, then " (LABEL)" (piilab.data.answer). Prompt
lookup (layers/lookup.py) drafts each row's next tokens from what followed the same tokens
before, so after a value and " (" it drafted the label of the row's line before, or the most
common one: NAME after an e-mail address, and every token after it was wasted. `LabelGuess`
drafts the label the value's shape suggests instead, with its ")" and the line break after it.
With the shipped model on the 150 short dev texts that took decoding from 60 passes to 47
(docs/layers.md, "Extraction speed"). A draft is only a guess: the model checks every drafted
token and keeps its own choice where they differ, so the answers are the same whatever is drafted.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from piilab.data import validators
from piilab.data.answer import format_answer


def answer_seeds(labels: Sequence[str]) -> list[str]:
    """What an answer says besides the values it copies: "None", or " (LABEL)" and a line break
    after each value. Drafted from the instruction instead, the tokens after "None" or "(" were
    those of the instruction's own sentences ("None\n\nText:", "(LABEL). If"), rejected every
    time. The first label comes last, so that after " (" the most common one (NAME) is drafted
    where `LabelGuess` has no guess. The line break: a line's ")" is followed by another line
    more often than by the answer's end, and drafting it costs nothing where the answer ends (the
    model's end of text is taken in its place in the same pass)."""
    return [format_answer([]), *(format_answer([("", label)]) + "\n" for label in reversed(labels))]


def label_by_shape(value: str, labels: Collection[str]) -> str | None:
    """The label that a value's shape suggests, if it is one of `labels` (else None). A guess
    for drafting, nothing more: a name with a digit or an ID that looks like a phone number
    gets the wrong one, and the model's own choice wins."""
    value = value.strip()
    digits = sum(c.isdigit() for c in value)
    letters = sum(c.isalpha() for c in value)
    if validators.is_email(value):
        label = "EMAIL"
    elif validators.is_web_address(value):
        label = "URL_PERSONAL"
    elif validators.is_phone(value):
        label = "PHONE_NUM"
    elif digits and letters >= 3 and " " in value:  # "42 Elm Row", "Hauptstr. 5, Berlin"
        label = "STREET_ADDRESS"
    elif digits >= 4:
        label = "ID_NUM"
    elif " " not in value and (digits or "_" in value or value.islower()):
        label = "USERNAME"
    else:
        label = "NAME"
    return label if label in labels else None


class LabelGuess:
    """A prompt-lookup guess (layers/drafts.Guess) for answers in piilab's format: after a
    line's value and " (", the label by the value's shape, ")" and a line break, in the tokens
    the tokenizer gives " (LABEL)" (as the answer seeds are tokenized, which the model's answers
    follow). After the answer's last line the line break is wrong and costs nothing: the model's
    end of text is taken in its place in the same pass."""

    def __init__(self, tokenizer, labels: Sequence[str]) -> None:
        self.tokenizer = tokenizer
        newline = tokenizer.encode("\n", add_special_tokens=False)
        self.openers: set[int] = set()
        self.tails: dict[str, list[int]] = {}  # label -> its tokens after " (", ")" and "\n"
        for label in labels:
            ids = tokenizer.encode(format_answer([("", label)]), add_special_tokens=False)
            if len(ids) > 1 and tokenizer.decode(ids[:1]) == " (":
                self.openers.add(ids[0])
                self.tails[label] = ids[1:] + newline

    def __call__(self, answer: Sequence[int]) -> list[int] | None:
        if not answer or answer[-1] not in self.openers:
            return None
        value = self.tokenizer.decode(answer[:-1]).rsplit("\n", 1)[-1]
        label = label_by_shape(value, self.tails)
        return self.tails[label] if label else None
