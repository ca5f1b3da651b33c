"""Token tags <-> character spans, for BIO (IOB2), BILUO, IOBES and plain IO tags.

Tokens are given by their character offsets, so a span runs from the first token's start to the
last token's end and keeps whatever whitespace lies between them.
"""

from __future__ import annotations

from collections.abc import Sequence

_BEGIN, _INSIDE, _LAST, _UNIT = "B", "I", "L", "U"
# IOBES spells L and U as E and S.
_PREFIX = {"B": _BEGIN, "I": _INSIDE, "L": _LAST, "E": _LAST, "U": _UNIT, "S": _UNIT}
SCHEMES = ("BIO", "BILUO", "IOBES")
ORPHAN_INSIDE = "I- tag without B- (started a new entity)"


def split_tag(tag: str) -> tuple[str | None, str | None]:
    """('B', 'NAME') for 'B-NAME'; (None, None) for 'O'; ('IO', 'NAME') for a plain 'NAME'."""
    tag = tag.strip()
    if tag in ("O", ""):
        return None, None
    if len(tag) > 2 and tag[1] == "-" and tag[0] in _PREFIX:
        return _PREFIX[tag[0]], tag[2:]
    if tag[:2] in ("B-", "I-", "L-", "E-", "U-", "S-"):
        raise ValueError(f"malformed tag {tag!r}")
    return "IO", tag


def tags_to_spans(
    starts: Sequence[int], ends: Sequence[int], tags: Sequence[str]
) -> tuple[list[tuple[int, int, str]], list[str]]:
    """(start, end, label) spans from per-token tags, and the repairs applied.

    An I/L/E tag that does not continue an open entity of its label starts a new one
    (repair `ORPHAN_INSIDE`); B/U close whatever is open. Raises ValueError on a malformed tag.
    """
    spans: list[tuple[int, int, str]] = []
    repairs: list[str] = []
    open_label: str | None = None
    open_start = open_end = 0

    def close() -> None:
        nonlocal open_label
        if open_label is not None:
            spans.append((open_start, open_end, open_label))
            open_label = None

    for start, end, tag in zip(starts, ends, tags):
        prefix, label = split_tag(tag)
        if prefix is None:
            close()
            continue
        continues = open_label == label and prefix in (_INSIDE, _LAST, "IO")
        if not continues:
            close()
            if prefix in (_INSIDE, _LAST):
                repairs.append(ORPHAN_INSIDE)
            open_label, open_start = label, start
        open_end = end
        if prefix in (_LAST, _UNIT):
            close()
    close()
    return spans, repairs


def spans_to_tags(
    starts: Sequence[int], ends: Sequence[int], spans: Sequence[tuple[int, int, str]], scheme: str = "BIO"
) -> list[str]:
    """Per-token tags for spans; a token belongs to a span when it lies inside it."""
    if scheme not in SCHEMES:
        raise ValueError(f"unknown tag scheme {scheme!r}; choose from {SCHEMES}")
    last, unit = ("E", "S") if scheme == "IOBES" else ("L", "U")
    tags = ["O"] * len(starts)
    ordered = sorted(spans)
    i = 0
    for span_start, span_end, label in ordered:
        while i < len(starts) and ends[i] <= span_start:
            i += 1
        inside = []
        while i < len(starts) and starts[i] < span_end:
            inside.append(i)
            i += 1
        for k, token in enumerate(inside):
            if scheme == "BIO":
                prefix = "B" if k == 0 else "I"
            elif len(inside) == 1:
                prefix = unit
            else:
                prefix = "B" if k == 0 else last if k == len(inside) - 1 else "I"
            tags[token] = f"{prefix}-{label}"
    return tags


def detect_scheme(tags: Sequence[str]) -> str:
    """The scheme a tag sequence is written in: IOBES if it uses E/S, BILUO if L/U, else BIO."""
    prefixes = {t[0] for t in tags if len(t) > 2 and t[1] == "-"}
    if prefixes & {"E", "S"}:
        return "IOBES"
    if prefixes & {"L", "U"}:
        return "BILUO"
    return "BIO"
