"""Deduplication and leakage-free train/test splits, in memory that stays small.

Both work on 64-bit hashes, not on texts: the dedup index and the split plan cost about 8 bytes
per document each (numpy arrays), so a build streams corpora of any size.

- Dedup: a text is an exact duplicate if its hash was seen; a near-duplicate if its normalised
  form (NFKC, case-folded, only letters and digits, single spaces) was seen. Shingle similarity
  (MinHash) is deliberately not used: synthetic texts of one template are near-identical by
  design, and the split already keeps templates apart.
- Split: documents are grouped (by document, template or a named meta field); whole groups go to
  one side, so no window of a document, and no held-out template, is on both sides. Group order
  is a seeded hash, so the same inputs and seed give the same split.
- Template split: a share of the test set comes from templates held out entirely
  (`heldout_template` true); the rest are fresh documents of templates also seen in training
  (`heldout_template` false), so evaluation can score both.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from array import array
from bisect import bisect_left
from dataclasses import dataclass, field

import numpy as np

from piilab.data.records import Document
from piilab.errors import PiilabError

_MASK64 = (1 << 64) - 1


def hash64(text: str) -> int:
    """A stable 64-bit hash of a string (Python's hash() changes between runs)."""
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "little")


# ASCII: everything but letters and digits becomes a space (bytes.translate: ~1 ns a byte).
_ASCII_SEPARATORS = bytes.maketrans(
    bytes(c for c in range(128) if not chr(c).isalnum()), b" " * sum(not chr(c).isalnum() for c in range(128))
)
# Beyond ASCII, after NFKC: Latin-1 punctuation and symbols (U+00A0-U+00BF, U+00D7, U+00F7),
# General Punctuation (U+2000-U+206F: dashes, quotes, ellipsis, odd spaces) and CJK punctuation
# (U+3000-U+303F), matched on their UTF-8 bytes, which is ~4x faster than a per-character table.
_UNICODE_SEPARATORS = re.compile(rb"\xc2[\xa0-\xbf]|\xc3[\x97\xb7]|\xe2\x80[\x80-\xbf]|\xe2\x81[\x80-\xaf]|\xe3\x80[\x80-\xbf]")


def dedup_key(text: str) -> bytes:
    """UTF-8 of the dedup form of a text: NFKC, case-folded, letters and digits in runs separated
    by single spaces (punctuation, symbols and whitespace all count as one space)."""
    if text.isascii():
        data = text.lower().encode("ascii")
    else:
        data = unicodedata.normalize("NFKC", text).casefold().encode("utf-8", "surrogatepass")
        # Most non-ASCII text (accented letters) holds none of their lead bytes, and five byte
        # searches cost less than the regex's scan.
        if b"\xc2" in data or b"\xe2" in data or b"\xe3" in data or b"\xc3\x97" in data or b"\xc3\xb7" in data:
            data = _UNICODE_SEPARATORS.sub(b" ", data)
    # Separators are single spaces now; collapsing runs of them in place (a pass or two of a
    # C-speed replace) gives what b" ".join(data.split()) gives without a bytes object a word.
    data = data.translate(_ASCII_SEPARATORS)
    while b"  " in data:
        data = data.replace(b"  ", b" ")
    return data.strip(b" ")


def normalize_for_dedup(text: str) -> str:
    """The form two texts share when they differ only in case, spacing or punctuation."""
    return dedup_key(text).decode("utf-8", "surrogatepass")


def mix64(values: np.ndarray, seed: int) -> np.ndarray:
    """splitmix64 of each value xor a seed: a seeded, well-spread order for hashes."""
    x = values.astype(np.uint64) ^ np.uint64(seed & _MASK64)
    with np.errstate(over="ignore"):
        x = x + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


class HashSet:
    """A set of 64-bit hashes at ~12 bytes each: a sorted array plus a small buffer set.

    The buffer (Python ints, ~70 bytes each) is merged into the array when it reaches
    `buffer` or 1/16 of the array, whichever is larger: memory stays near 8 bytes a hash,
    and merges (linear, two sorted runs) stay rare.
    """

    def __init__(self, buffer: int = 4096) -> None:
        self._sorted = array("Q")
        self._recent: set[int] = set()
        self._buffer = buffer

    def __len__(self) -> int:
        return len(self._sorted) + len(self._recent)

    def __contains__(self, key: int) -> bool:
        if key in self._recent:
            return True
        i = bisect_left(self._sorted, key)
        return i < len(self._sorted) and self._sorted[i] == key

    def add(self, key: int) -> bool:
        """Add a hash (0 <= key < 2**64); False if it was already there."""
        recent, stored = self._recent, self._sorted
        if key in recent:
            return False
        i = bisect_left(stored, key)
        if i < len(stored) and stored[i] == key:
            return False
        recent.add(key)
        if len(recent) >= self._buffer and len(recent) >= len(stored) >> 4:
            fresh = np.sort(np.fromiter(recent, np.uint64, len(recent)))
            merged = np.concatenate([np.frombuffer(stored, dtype=np.uint64), fresh])
            self._sorted = array("Q", np.sort(merged, kind="stable").tobytes())  # two runs: linear
            self._recent.clear()
        return True


class Deduper:
    """Remembers the texts seen in this run (as hashes) and names the kind of repeat."""

    EXACT = "exact duplicate text"
    NEAR = "near-duplicate text (differs only in case, spacing or punctuation)"

    def __init__(self) -> None:
        self._exact = HashSet()
        self._near = HashSet()

    @staticmethod
    def keys(text: str) -> tuple[int, int]:
        """The (exact, near) hashes of a text."""
        # Python's own str hash: fast and cached, and only needs to agree within one run.
        return hash(text) & _MASK64, hash(dedup_key(text)) & _MASK64

    def repeat(self, keys: tuple[int, int]) -> str | None:
        """The reason a text with these keys is a duplicate of one remembered, or None."""
        exact, near = keys
        return self.EXACT if exact in self._exact else self.NEAR if near in self._near else None

    def remember(self, keys: tuple[int, int]) -> None:
        """Remember a text's keys: later texts with them are duplicates."""
        self._exact.add(keys[0])
        self._near.add(keys[1])

    def check(self, text: str) -> str | None:
        """None for a new text (now remembered), else the reason it is a duplicate."""
        keys = self.keys(text)
        reason = self.repeat(keys)
        if reason is None:
            self.remember(keys)
        return reason


def group_of(doc: Document, split_by: str) -> tuple[str, str]:
    """(mode, group key) of a document: 'template' mode holds templates out, 'group' does not."""
    if split_by == "document":
        return "group", doc.id
    if split_by in ("auto", "template"):
        template = doc.meta.get("template_id")
        if template is not None:
            return "template", f"{doc.source}\x00{template}"
        # a text made from another (a carrier of a real text) goes where that text goes
        return "group", doc.meta.get("split_group", doc.id)
    if split_by.startswith("field:"):
        value = doc.meta.get(split_by[len("field:") :])
        return "group", f"{split_by}\x00{value}" if value is not None else doc.id
    raise PiilabError(f"unknown split {split_by!r}; use document, template, auto or field:NAME")


@dataclass
class _Pool:
    """The documents of one source that are split one way: their group, id and record count."""

    mode: str
    groups: array = field(default_factory=lambda: array("Q"))
    docs: array = field(default_factory=lambda: array("Q"))
    records: array = field(default_factory=lambda: array("I"))


def _sorted_array(values: list[np.ndarray]) -> array:
    """Hashes as a sorted array('Q') for bisect lookups (8 bytes each, unlike a set's ~70)."""
    merged = np.concatenate(values) if values else np.empty(0, dtype=np.uint64)
    return array("Q", np.unique(merged.astype(np.uint64)).tobytes())


def _member(hashes: array, key: int) -> bool:
    i = bisect_left(hashes, key)
    return i < len(hashes) and hashes[i] == key


_HELDOUT, _TEST, _SEEN, _TRAIN = ("test", True), ("test", None), ("test", False), ("train", None)


@dataclass
class SplitPlan:
    """Which groups and documents go to test; everything else is train."""

    test_groups: array = field(default_factory=lambda: array("Q"))
    heldout_groups: array = field(default_factory=lambda: array("Q"))
    test_docs: array = field(default_factory=lambda: array("Q"))
    records: dict[str, int] = field(default_factory=lambda: {"train": 0, "test": 0})

    def side(self, group: int, doc: int) -> tuple[str, bool | None]:
        """('train' | 'test', heldout_template flag or None outside template splits)."""
        # (empty arrays skipped: this runs once a record, and a split uses one or two of them)
        hashes = self.heldout_groups
        if hashes and _member(hashes, group):
            return _HELDOUT
        hashes = self.test_groups
        if hashes and _member(hashes, group):
            return _TEST
        hashes = self.test_docs
        if hashes and _member(hashes, doc):
            return _SEEN
        return _TRAIN


def _take_groups(groups: np.ndarray, sizes: np.ndarray, target: int, seed: int, keep_one: bool) -> np.ndarray:
    """Groups in seeded order until their sizes reach `target` (the closer of the two counts)."""
    if target <= 0 or len(groups) == 0:
        return groups[:0]
    order = np.argsort(mix64(groups, seed), kind="stable")
    cum = np.cumsum(sizes[order])
    k = int(np.searchsorted(cum, target, side="left"))  # first k+1 groups reach the target
    k = k + 1 if k < len(cum) and (k == 0 or cum[k] - target <= target - cum[k - 1]) else k
    if keep_one:
        k = min(k, len(groups) - 1)  # leave training at least one group
    return groups[order[:k]]


class SplitPlanner:
    """Collects (source, group, document, record count) while a build streams, then plans."""

    def __init__(self) -> None:
        self._pools: dict[tuple[str, str], _Pool] = {}

    def add(self, source: str, mode: str, group: int, doc: int, records: int) -> None:
        pool = self._pools.get((source, mode))
        if pool is None:  # (not setdefault: that would build a _Pool and its arrays every call)
            pool = self._pools[(source, mode)] = _Pool(mode)
        pool.groups.append(group)
        pool.docs.append(doc)
        pool.records.append(records)

    def plan(self, test_size: float, seed: int, heldout_share: float = 0.5) -> SplitPlan:
        """Send about `test_size` of each source's documents to test, whole groups at a time."""
        if not 0 <= test_size < 1:
            raise PiilabError(f"--test-size must be in [0, 1), got {test_size}")
        if not 0 <= heldout_share <= 1:
            raise PiilabError(f"the held-out template share must be in [0, 1], got {heldout_share}")
        plan = SplitPlan()
        chosen_groups: list[np.ndarray] = []
        held_groups: list[np.ndarray] = []
        chosen_docs: list[np.ndarray] = []
        for (source, mode), pool in sorted(self._pools.items()):
            groups = np.frombuffer(pool.groups, dtype=np.uint64)
            docs = np.frombuffer(pool.docs, dtype=np.uint64)
            records = np.frombuffer(pool.records, dtype=np.uint32).astype(np.int64)
            salt = seed ^ hash64(source)
            uniq, counts = np.unique(groups, return_counts=True)
            n_test = round(test_size * len(docs))
            if mode == "template":
                held = _take_groups(uniq, counts, round(heldout_share * n_test), salt, keep_one=True)
                held_groups.append(held)
                is_held = np.isin(groups, held)
                rest = n_test - int(is_held.sum())
                seen = np.flatnonzero(~is_held)
                if rest > 0 and len(seen):
                    pick = seen[np.argsort(mix64(docs[seen], salt + 1), kind="stable")[: min(rest, len(seen) - 1)]]
                    chosen_docs.append(docs[pick])
                    is_held[pick] = True
                in_test = is_held
            else:
                chosen = _take_groups(uniq, counts, n_test, salt, keep_one=True)
                chosen_groups.append(chosen)
                in_test = np.isin(groups, chosen)
            plan.records["test"] += int(records[in_test].sum())
            plan.records["train"] += int(records[~in_test].sum())
        plan.test_groups = _sorted_array(chosen_groups)
        plan.heldout_groups = _sorted_array(held_groups)
        plan.test_docs = _sorted_array(chosen_docs)
        return plan


def mix_count(n_records: int, fraction: float) -> int:
    """How many instruction rows make `fraction` of a split that has `n_records` PII records."""
    if not 0 <= fraction < 1:
        raise PiilabError(f"a mix fraction must be in [0, 1), got {fraction}")
    return round(n_records * fraction / (1 - fraction))
