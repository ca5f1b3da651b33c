"""Questions about a set of spans (start, end), end exclusive: does a span share a character with
any of them, which one holds it. `taken_by` and `containing` answer many questions about one set
in logarithmic time each; the validators ask one per address, number or model item."""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable
from itertools import accumulate


def overlaps(span: tuple[int, int], others: Iterable[tuple[int, ...]]) -> bool:
    """Whether `span` (start, end) shares a character with any of `others`."""
    return any(span[0] < o[1] and o[0] < span[1] for o in others)


def taken_by(spans: Iterable[tuple[int, ...]]):
    """(start, end) -> whether it shares a character with one of `spans`: `overlaps` for many
    questions about one set, in logarithmic time each."""
    ordered = sorted(s[:2] for s in spans)
    starts = [start for start, _ in ordered]
    reach = list(accumulate((end for _, end in ordered), max))  # the furthest end so far

    def hit(start: int, end: int) -> bool:
        before = bisect_left(starts, end)  # the spans that begin before `end`
        return before > 0 and reach[before - 1] > start
    return hit


def containing(wholes: list[tuple[int, int]]):
    """(start, end) -> the one of `wholes` (non-overlapping) that holds it and is longer, or None."""
    ordered = sorted(wholes)
    starts = [start for start, _ in ordered]

    def around(start: int, end: int) -> tuple[int, int] | None:
        at = bisect_right(starts, start) - 1
        if at >= 0 and end <= ordered[at][1] and ordered[at] != (start, end):
            return ordered[at]
        return None
    return around
