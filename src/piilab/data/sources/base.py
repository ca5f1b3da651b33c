"""What every reader shares: the tally of skipped and repaired records, decoding, span checks.

Readers turn one input record into one `Document` or into one counted skip; they never drop a
record silently. Every repair rule lives here or in `tags.py`, and docs/data.md lists them.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from operator import attrgetter
from pathlib import Path
from typing import Any

import msgspec

from piilab.data.labels import LabelTally
from piilab.data.records import Span
from piilab.errors import PiilabError
from piilab.io import has_bad_utf8, unreadable_json

log = logging.getLogger(__name__)

MAX_EXAMPLES = 3
# How far a span may be moved to find its `value` when the offsets are off (ai4privacy has
# ~0.2-0.5% such spans). Further than this, the nearest occurrence may be a different mention.
MAX_SHIFT = 8
_position = attrgetter("start", "end", "label")
_span = Span.trusted
_decode_any = msgspec.json.Decoder().decode
_DECLINED = object()


def field_decoder(fields: tuple[str, ...]):
    """A JSON-object decoder that builds only `fields` (a dict of those present).

    The rest of the object is checked as JSON but never becomes Python objects, which is most of
    the cost of a line whose unused fields are large (ai4privacy's mBERT token and tag lists).
    Anything not a JSON object raises ValueError.
    """
    row = msgspec.defstruct("Row", [(f"f{i}", Any, msgspec.UNSET) for i in range(len(fields))],
                            rename={f"f{i}": name for i, name in enumerate(fields)})
    decode, astuple, unset = msgspec.json.Decoder(row).decode, msgspec.structs.astuple, msgspec.UNSET

    def load(raw: bytes) -> dict:
        if not raw.isascii():
            raw.decode("utf-8")  # the unbuilt fields are not checked for UTF-8; the line must be
        return {name: value for name, value in zip(fields, astuple(decode(raw))) if value is not unset}

    return load


@dataclass
class Tally:
    """What became of the records of one source: read, written, skipped or repaired, and why.

    `read == written + sum(skipped)` once a build is done: nothing is lost silently.
    """

    source: str
    strict: bool = False
    read: int = 0
    written: int = 0
    skipped: Counter = field(default_factory=Counter)
    repaired: Counter = field(default_factory=Counter)
    notes: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)
    labels: LabelTally = field(default_factory=LabelTally)
    files: list[str] = field(default_factory=list)
    empty_files: list[str] = field(default_factory=list)
    """Files that held no records at all (named when nothing could be built)."""

    def skip(self, reason: str, where: str, bad: bool = True, n: int = 1) -> None:
        """Count `n` skipped records. Bad input is an error under --strict; policy skips are not."""
        if bad and self.strict:
            raise PiilabError(f"{where}: {reason} (--strict)")
        self.skipped[reason] += n
        self._example(reason, where)

    def repair(self, reason: str, where: str) -> None:
        """Count a repair applied by a documented rule; an error under --strict."""
        if self.strict:
            raise PiilabError(f"{where}: {reason} (--strict)")
        self.repaired[reason] += 1
        self._example(reason, where)

    def note(self, reason: str) -> None:
        """Count a format variant that needed no repair (e.g. a mask stored as a string)."""
        self.notes[reason] += 1

    def _example(self, reason: str, where: str) -> None:
        # Locations only, never record text: the card must not leak PII.
        examples = self.examples.setdefault(reason, [])
        if len(examples) < MAX_EXAMPLES:
            examples.append(where)

    def left_out(self) -> str:
        """The skipped records by reason, each with where its first one is (locations only):
        "2 span without start, end and label (first: gold.jsonl:3)"."""
        first = {reason: f" (first: {places[0]})" for reason, places in self.examples.items() if places}
        return ", ".join(f"{n} {reason}{first.get(reason, '')}" for reason, n in self.skipped.most_common())

    @property
    def balanced(self) -> bool:
        return self.read == self.written + sum(self.skipped.values())

    def to_card(self) -> dict[str, Any]:
        return {
            "files": self.files,
            "records_in": self.read,
            "written": self.written,
            "skipped": sum(self.skipped.values()),
            "skip_reasons": dict(self.skipped.most_common()),
            "repairs": dict(self.repaired.most_common()),
            "notes": dict(self.notes.most_common()),
            "examples": self.examples,
            "balanced": self.balanced,
        }


class RecordError(ValueError):
    """A record that cannot be used; the message is the skip reason (no record text in it)."""


def decode_file(path: Path) -> str:
    """A whole file as text; bytes that are not UTF-8 survive as surrogates to be found per record."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise PiilabError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise PiilabError(f"{path}: is a directory") from None
    return data.decode("utf-8-sig", errors="surrogateescape")


def first_content(path: Path, chunk: int = 1 << 16) -> tuple[int, str]:
    """(offset, character) of a file's first byte that is neither whitespace nor a UTF-8 BOM,
    however far in: '[' starts a JSON list. (-1, '') for a file of whitespace only."""
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        raise PiilabError(f"{path}: file not found") from None
    with handle:
        offset = 3 if handle.read(3) == b"\xef\xbb\xbf" else 0
        handle.seek(offset)
        while data := handle.read(chunk):
            rest = data.lstrip()  # (JSON's whitespace: space, tab, line feed, carriage return)
            if rest:
                return offset + len(data) - len(rest), rest[:1].decode("latin-1")
            offset += len(data)
    return -1, ""


def peek(path: Path, size: int = 65536, offset: int = 0) -> str:
    """`size` bytes of a file from `offset` as text (for format detection)."""
    try:
        with path.open("rb") as handle:
            handle.seek(offset)
            return handle.read(size).decode("utf-8-sig", errors="replace")
    except FileNotFoundError:
        raise PiilabError(f"{path}: file not found") from None


def first_line(path: Path, limit: int = 1 << 26, offset: int = 0) -> str:
    """The line at `offset` (at most `limit` bytes), for detecting JSON Lines whose first
    record is longer than `peek` reads."""
    with path.open("rb") as handle:
        handle.seek(offset)
        return handle.readline(limit).decode("utf-8-sig", errors="replace")


def position(where: str) -> str:
    """The index or line number at the end of a location ("f.json[3]" -> "3", "f.jsonl:7" -> "7")."""
    return where.rstrip("]").rsplit("[" if where.endswith("]") else ":", 1)[-1]


def load_json_list(path: Path) -> list:
    """A JSON file holding a list; malformed JSON is an error naming the file and line."""
    text = decode_file(path)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise PiilabError(f"{path}: line {err.lineno}: malformed JSON ({err.msg})") from None
    except (ValueError, RecursionError) as err:
        raise PiilabError(f"{path}: malformed JSON ({unreadable_json(err)})") from None
    if isinstance(data, dict):
        # Some mirrors wrap the list: {"data": [...]}.
        lists = [v for v in data.values() if isinstance(v, list)]
        if len(lists) == 1:
            return lists[0]
    if not isinstance(data, list):
        raise PiilabError(f"{path}: expected a JSON list of records, got {type(data).__name__}")
    return data


def iter_jsonl(path: Path, tally: Tally, fields: tuple[str, ...] | None = None) -> Iterator[tuple[str, dict]]:
    """Stream (location, object) from a JSON Lines file; bad lines are counted skips.

    `fields`: the keys the reader uses; each object then holds only those (see field_decoder).
    """
    try:
        handle = path.open("rb", buffering=1 << 16)  # fewer system calls for ~2 KB lines
    except FileNotFoundError:
        raise PiilabError(f"{path}: file not found") from None
    name = str(path)
    loads = field_decoder(fields) if fields else _decode_any
    with handle:
        for lineno, raw in enumerate(handle, 1):
            if raw.isspace() or not raw:  # (isspace stops at the first other byte; strip would copy)
                continue
            where = f"{name}:{lineno}"
            tally.read += 1
            try:
                obj = loads(raw)  # msgspec: ~2x the json module's speed, and the same values
            except (ValueError, RecursionError):
                obj = _DECLINED
            if obj is _DECLINED:
                # What msgspec declines (a BOM, bad UTF-8, NaN, lone surrogate escapes, malformed
                # JSON, anything but an object where `fields` are asked for) gets the json
                # module's verdict and messages, as before.
                try:
                    line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
                except UnicodeDecodeError:
                    tally.skip("invalid UTF-8", where)
                    continue
                try:
                    obj = json.loads(line)
                    bad = has_bad_utf8(obj)  # (recursive: a RecursionError for nesting json just took)
                except (ValueError, RecursionError) as err:  # (a JSONDecodeError is a ValueError)
                    tally.skip("malformed JSON", f"{where} ({unreadable_json(err)})")
                    continue
                if bad:
                    tally.skip("invalid UTF-8", f"{where} (a lone surrogate escape)")
                    continue
            if type(obj) is not dict:
                tally.skip("not a JSON object", where)
                continue
            yield where, obj


def iter_json_items(path: Path, tally: Tally) -> Iterator[tuple[str, dict]]:
    """(location, object) for each item of a JSON list file; bad items are counted skips."""
    items = load_json_list(path)
    for index, obj in enumerate(items):
        where = f"{path}[{index}]"
        tally.read += 1
        if not isinstance(obj, dict):
            tally.skip("not a JSON object", where)
            continue
        try:
            bad = has_bad_utf8(obj)
        except RecursionError as err:  # nesting the json module took, deeper than this check can go
            tally.skip("malformed JSON", f"{where} ({unreadable_json(err)})")
            continue
        if bad:
            tally.skip("invalid UTF-8", where)
            continue
        yield where, obj


def require(obj: dict, key: str, kind: type | tuple[type, ...]) -> Any:
    """obj[key], checked for presence and type; raises RecordError with the skip reason."""
    if key not in obj or obj[key] is None:
        raise RecordError(f"missing field '{key}'")
    value = obj[key]
    if not isinstance(value, kind) or isinstance(value, bool) and kind is int:
        raise RecordError(f"field '{key}' has the wrong type")
    return value


def _relocate(text: str, value: str, start: int) -> int | None:
    """The start of the occurrence of `value` nearest to `start`, if unique and within MAX_SHIFT."""
    lo = max(0, start - MAX_SHIFT)
    hits = []
    at = text.find(value, lo)
    while at != -1 and at <= start + MAX_SHIFT:
        hits.append(at)
        at = text.find(value, at + 1)
    if not hits:
        return None
    hits.sort(key=lambda h: abs(h - start))
    if len(hits) > 1 and abs(hits[0] - start) == abs(hits[1] - start):
        return None  # two equally near: no way to tell which mention was meant
    return hits[0]


def _as_offset(value: Any) -> int:
    if isinstance(value, bool):
        raise RecordError("span offset is not an integer")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)  # some CSV-born mirrors store offsets as strings
    raise RecordError("span offset is not an integer")


def check_spans(
    text: str,
    raw: list[tuple[Any, Any, Any, Any]],
    where: str,
    tally: Tally,
) -> list[Span]:
    """Turn raw (start, end, label, value-or-None) into sorted, non-overlapping, exact spans.

    Rules (docs/data.md): offsets whose text differs from `value` move to the nearest unique
    occurrence of `value` within MAX_SHIFT characters (repair) or the record is skipped (a wrong
    span is never kept, and dropping it would teach that the PII is not PII); surrounding
    whitespace is trimmed (repair); of two overlapping spans the longer is kept (repair).
    Raises RecordError for a record that must be skipped.
    """
    spans: list[Span] = []
    append = spans.append
    n = len(text)
    ordered = True  # sorted and non-overlapping so far: then resolve_overlaps has nothing to do
    last_end = 0
    for start, end, label, value in raw:
        # Fast path, taken by nearly every span: exact offsets, clean value and label.
        if type(start) is int and type(end) is int and type(label) is str and 0 <= start < end <= n:
            piece = text[start:end]
            # (strip() returns the string itself when there is nothing to strip: == is then free)
            if (value is None or piece == value) and label and piece.strip() == piece and label.strip() == label:
                append(_span(start, end, label, piece))
                if start < last_end:
                    ordered = False
                last_end = end
                continue
        ordered = False
        if not isinstance(label, str) or not label.strip():
            raise RecordError("span without a label")
        label = label.strip()
        start, end = _as_offset(start), _as_offset(end)
        if value is not None and not isinstance(value, str):
            raise RecordError("span value is not a string")
        in_range = 0 <= start < end <= len(text)
        if value is not None and (not in_range or text[start:end] != value):
            if not value:
                raise RecordError("span with an empty value")
            moved = _relocate(text, value, start)
            if moved is None:
                raise RecordError(
                    "span offsets do not match its value" if in_range else "span out of range"
                )
            tally.repair(f"span offsets shifted (<= {MAX_SHIFT} chars) to match its value", where)
            start, end = moved, moved + len(value)
        elif not in_range:
            raise RecordError("span out of range")
        piece = text[start:end]
        stripped = piece.strip()
        if not stripped:
            tally.repair("whitespace-only span dropped", where)
            continue
        if stripped != piece:
            start += len(piece) - len(piece.lstrip())
            end = start + len(stripped)
            tally.repair("span trimmed of surrounding whitespace", where)
        spans.append(Span(start, end, label, text[start:end]))
    return spans if ordered else resolve_overlaps(spans, where, tally)


def resolve_overlaps(spans: list[Span], where: str, tally: Tally) -> list[Span]:
    """Sorted spans with overlaps removed: the longer span wins, then the earlier (repair)."""
    spans = sorted(spans, key=_position)
    if all(a.end <= b.start for a, b in zip(spans, spans[1:])):
        return spans  # the common case, in one pass
    kept: list[Span] = []
    for span in sorted(spans, key=lambda s: (-(s.end - s.start), s.start)):
        if all(span.end <= k.start or k.end <= span.start for k in kept):
            kept.append(span)
        elif any(k.start == span.start and k.end == span.end and k.label == span.label for k in kept):
            tally.repair("duplicate span dropped", where)
        else:
            tally.repair("overlapping spans (kept the longer)", where)
    return sorted(kept, key=_position)
