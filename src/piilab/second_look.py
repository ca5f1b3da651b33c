"""Second look: one more line from the likely ways on that a greedy answer did not take.

Greedy decoding commits to one token per step. Where an item may begin, a model often gives a
second way on a fair chance: a name the answer skipped ("K" of "Kevin" at 6% after a username),
or a new line where the answer ended. The copy-constrained decoder notes each valid token of at
least `THRESHOLD` probability there (layers/constrain.Notes). The `WAYS` most likely of each
answer become prompts that end with the answer written up to that token and the token, decoded
to the end of their line under the same constraint; a line is kept where the model wrote it
itself (the constraint never overrode its first choice). The lines' items join the answer's
after them, where they overlap none of its items: the greedy answer wins. An answer of `None`
gets no second look, so a text the model finds free of PII keeps its answer. Measured on the
real-text dev set (docs/evaluation.md, "Second look").
"""

from __future__ import annotations

from collections.abc import Sequence

from piilab.data.answer import parse_answer
from piilab.shapes import overlaps

THRESHOLD = 0.05
"""`piilab extract`'s default: the least probability of a way on worth a second look."""
WAYS = 2
"""Ways on per answer decoded, the most likely: further ones found little but false items."""


def branches(answers: Sequence[str], found: dict[int, dict[bytes, float]],
             ways: int = WAYS) -> list[tuple[int, str]]:
    """(prompt index, the answer written up to and with the other token) for the `ways` most
    likely noted ways on of each answer that names items, most likely first."""
    out = []
    for prompt in sorted(found):
        if not parse_answer(answers[prompt]):
            continue  # `None`: no second look at a text the model finds free of PII
        likely = sorted(found[prompt].items(), key=lambda kv: -kv[1])
        texts = []
        for written, _ in likely:
            try:
                texts.append(written.decode("utf-8"))
            except UnicodeDecodeError:
                continue  # the token ends inside a character: no text prompt can end there
        out += [(prompt, text) for text in texts[:ways]]
    return out


def line(written: str, continuation: str) -> str:
    """The line a branch wrote: the last line of what was written, and its continuation (which
    decoding cut before its first new line)."""
    return (written + continuation).split("\n")[-1]


def join(placed: list[dict], looked: list[dict]) -> list[dict]:
    """The answer's placed items, then the second look's items, each with the spans that overlap
    none kept before it (an item left with none is dropped), marked "found_by": "second look"."""
    kept = list(placed)
    for item in looked:
        taken = [(s["start"], s["end"]) for other in kept for s in other["spans"]]
        spans = [s for s in item["spans"] if not overlaps((s["start"], s["end"]), taken)]
        if spans:
            kept.append({**item, "spans": spans, "found_by": "second look"})
    return kept
