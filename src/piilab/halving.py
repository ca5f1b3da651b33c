"""Halving: a window whose answer `max_new_tokens` cut is cut in two and searched again.

An answer cut at `max_new_tokens` lost the items after the cut. Decoding it again with more new
tokens does not bring them back: the shipped model's answer to a dense contact list, given four
times the budget, ended by repeating earlier items. Its answers to shorter windows are shorter and
hold fewer items, as training's windows did, so a cut answer's window is halved (at a line break
where there is one) and each half searched again, up to HALVINGS times (docs/layers.md,
"Answers cut at max_new_tokens"). Where the window's answer and its halves' disagree about a
place in the text, the window's holds (piilab.extract.place_by_depth).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from piilab.second_look import own_lines

log = logging.getLogger(__name__)

HALVINGS = 3
"""Times a window whose answer `max_new_tokens` cut is halved and searched again."""
BREAKS = ("\n", ". ", " ")
"""Where a window is halved, best first: after a line, after a sentence, after a word."""


@dataclass
class Searched:
    """One window searched: its text's number, how many halvings deep it lies, the model's answer
    and the second look's lines."""

    owner: int
    depth: int
    answer: str
    lines: list[str]


def search_windows(search, prompt, windows: list[tuple[int, str]], labels: tuple[str, ...],
                   overlap: int, constrain: bool, second_look: float, max_new_tokens: int
                   ) -> list[Searched]:
    """Every window searched: `windows` ((text number, window) each), then the halves of each
    window whose answer `max_new_tokens` cut, and their halves, up to HALVINGS times. `search`
    decodes prompts as piilab.extract.decode_answers does; `prompt` writes a window's prompt."""
    from piilab.layers.constrain import Notes

    searched = []
    for depth in range(HALVINGS + 1):
        if not windows:
            break
        notes = Notes(second_look) if second_look > 0 else None
        answers, branches, cut = search(
            [prompt(window) for _, window in windows],
            rules=[(window, labels) for _, window in windows] if constrain else None, notes=notes)
        searched += [Searched(owner, depth, answer, lines) for (owner, _), answer, lines
                     in zip(windows, answers, own_lines(len(windows), branches, notes))]
        if cut and depth == HALVINGS:
            log.warning("%d answer(s) still cut at max_new_tokens %d after halving their windows %d "
                        "times: their last items are lost (raise --max-new-tokens)", len(cut),
                        max_new_tokens, HALVINGS)
        elif cut:
            log.info("%d answer(s) cut at max_new_tokens %d: their windows are halved and searched "
                     "again", len(cut), max_new_tokens)
        windows = [(windows[k][0], half) for k in sorted(cut) if depth < HALVINGS
                   for half in halves(windows[k][1], overlap)]
    return searched


def cut_rows(tokenizer, token_ids: list[list[int]], decoding, eos: Sequence[int]) -> set[int]:
    """The rows that `max_new_tokens` ended: as many tokens as it allows, the last no EOS, and
    no stop string in them."""
    from piilab.layers.decode import cut_at_stop

    def stopped(ids: list[int]) -> bool:
        return bool(decoding.stop) and cut_at_stop(
            tokenizer.decode(ids, skip_special_tokens=True), decoding.stop)[1]

    return {row for row, ids in enumerate(token_ids)
            if len(ids) >= decoding.max_new_tokens and ids[-1] not in eos and not stopped(ids)}


def halves(window: str, overlap: int) -> list[str]:
    """`window` in two parts, which end and begin at breaks of the best kind found in its middle
    half (BREAKS: a list is cut between its lines, not inside a phone number), nearest to half
    the window less or more half the overlap, so that they share up to `overlap` characters
    (at most an eighth of the window: halves of dense lists that shared a quarter were cut again
    more often, and gave 110 items of four such texts against 122). Parts of nothing but
    whitespace are left out."""
    size = len(window)
    reach, middle = min(overlap, size // 8) // 2, size // 2
    end = _break_near(window, middle + reach, middle, size - size // 4)
    start = _break_near(window, middle - reach, size // 4, middle + 1)
    return [part for part in (window[:end], window[start:]) if part.strip()]


def _break_near(window: str, target: int, low: int, high: int) -> int:
    """The place just after a break of the best kind (BREAKS) that ends in window[low:high],
    the one nearest `target`; `target` where there is none."""
    for mark in BREAKS:
        places, at = [], window.find(mark, max(low - len(mark) + 1, 0), high)
        while at >= 0:
            places.append(at + len(mark))
            at = window.find(mark, at + 1, high)
        if places:
            return min(places, key=lambda place: (abs(place - target), place))
    return target
