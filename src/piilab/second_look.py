"""Second look: one more line from the likely ways on that a greedy answer did not take.

Greedy decoding commits to one token per step. Where an item may begin, a model often gives a
second way on a fair chance: a name the answer skipped ("K" of "Kevin" at 6% after a username),
or a new line where the answer ended. The copy-constrained decoder notes each valid token of at
least `THRESHOLD` probability there (layers/constrain.Notes). The `WAYS` most likely of each
answer are decoded on from the answer's tokens up to that token and the token (the model's own
tokens, not the text tokenized again), to the end of their line under the same constraint:
prompt-lookup decoding forks the answer's row and its cache where the way on begins, plain
decoding prefills the prompt and those tokens. A line is kept where the model wrote it itself
(the constraint never overrode its first choice). The lines' items join the answer's
after them, where they overlap none of its items: the greedy answer wins. An answer of `None`
gets no second look, so a text the model finds free of PII keeps its answer. Measured on the
real-text dev set (docs/evaluation.md, "Second look").
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from piilab.data.answer import parse_answer
from piilab.errors import PiilabError
from piilab.span_sets import overlaps

log = logging.getLogger(__name__)

THRESHOLD = 0.05
"""`piilab extract`'s default: the least probability of a way on worth a second look."""
DEFAULTS_FILE = "extract_defaults.json"
"""Beside an adapter (or merged model): `{"second_look": P}`, the threshold its recipe chose
(an experiment's `extract` section), which `piilab extract` takes unless told otherwise."""
WAYS = 2
"""Ways on per answer decoded, the most likely: further ones found little but false items."""


@dataclass
class Branch:
    """One way on to look at: prompt `prompt`'s answer written up to and with the other token."""

    prompt: int
    written: str
    tokens: tuple[int, ...]
    """The answer's token ids up to and with the other token: the branch goes on from them."""
    continuation: str = ""
    """What decoding wrote after `written`, cut before its first new line."""
    overridden: bool = False
    """Whether the constraint overrode the model's first choice in the continuation."""

    @property
    def line(self) -> str:
        return line(self.written, self.continuation)


def ways_to_take(prompt: int, answer: str, notes, ways: int = WAYS) -> list[Branch]:
    """The branches of one prompt's answer: its `ways` most likely noted ways on
    (layers/constrain.Notes), most likely first; none where the answer names no item."""
    if not parse_answer(answer):
        return []  # `None`: no second look at a text the model finds free of PII
    out = []
    likely = sorted(notes.ways_on.get(prompt, {}).items(), key=lambda kv: -kv[1])
    for written, _ in likely:
        try:
            text = written.decode("utf-8")
        except UnicodeDecodeError:
            continue  # the token ends inside a character: no line can be read there
        out.append(Branch(prompt, text, notes.tokens.get(prompt, {}).get(written, ())))
        if len(out) == ways:
            break
    return out


def branches(answers: Sequence[str], notes, ways: int = WAYS) -> list[Branch]:
    """Every prompt's branches (`ways_to_take`), in prompt order."""
    return [branch for prompt in sorted(notes.ways_on)
            for branch in ways_to_take(prompt, answers[prompt], notes, ways)]


def own_lines(prompts: int, branches: Sequence[Branch], notes) -> list[list[str]]:
    """Per prompt, the lines its second look wrote: each branch's line, kept where the model
    wrote it itself (the constraint never had to override its first choice: a forced line is the
    constraint's, not the model's)."""
    lines: list[list[str]] = [[] for _ in range(prompts)]
    for branch in branches:
        if not branch.overridden:
            lines[branch.prompt].append(branch.line)
    if notes is not None:
        log.info("second look: %d ways on of probability >= %.2f in %d answers; %d lines the "
                 "model's own", len(branches), notes.threshold, len({b.prompt for b in branches}),
                 sum(map(len, lines)))
    return lines


def line(written: str, continuation: str) -> str:
    """The line a branch wrote: the last line of what was written, and its continuation (which
    decoding cut before its first new line)."""
    return (written + continuation).split("\n")[-1]


def join(placed: list[dict], looked: list[dict], found_by: str | None = "second look") -> list[dict]:
    """The answer's placed items, then the second look's items, each with the spans that overlap
    none kept before it (an item left with none is dropped), marked "found_by": `found_by`."""
    kept = list(placed)
    for item in looked:
        taken = [(s["start"], s["end"]) for other in kept for s in other["spans"]]
        spans = [s for s in item["spans"] if not overlaps((s["start"], s["end"]), taken)]
        if spans:
            kept.append({**item, "spans": spans, **({"found_by": found_by} if found_by else {})})
    return kept


def checked_threshold(value, where: str) -> float:
    """`value` as a threshold, a probability in [0, 1); else an error naming `where` it came from."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise PiilabError(f"{where}: the second look's threshold must be a probability in [0, 1), "
                          f"not {value!r}")
    return float(value)


def threshold_for(folder: str | Path | None) -> tuple[float, str]:
    """The second look's threshold for an adapter (or merged model) folder, and where it came
    from: the folder's DEFAULTS_FILE, else THRESHOLD (chosen for the shipped model)."""
    from piilab.io import read_json

    path = Path(folder) / DEFAULTS_FILE if folder else None
    if path is None or not path.is_file():
        return THRESHOLD, "piilab's default"
    saved = read_json(path)
    if not isinstance(saved, dict) or "second_look" not in saved:
        raise PiilabError(f"{path}: no field 'second_look'")
    return checked_threshold(saved["second_look"], f"{path}, field 'second_look'"), str(path)


def save_threshold(folder: str | Path, threshold: float) -> None:
    """Write `folder`'s DEFAULTS_FILE, so `piilab extract` takes `threshold` for this adapter."""
    from piilab.io import write_json

    write_json(Path(folder) / DEFAULTS_FILE, {"second_look": checked_threshold(threshold, str(folder))})
