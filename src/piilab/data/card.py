"""What card.json counts per split: records, sources, windows, labels and length statistics."""

from __future__ import annotations

import random
from array import array
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

_RESERVOIR = 10_000  # lengths kept per split for percentiles; mean, min and max are exact


class Lengths:
    """Exact count, min, mean and max of each length, and percentiles from a seeded reservoir."""

    KEYS = ("text_chars", "prompt_chars", "completion_chars")

    def __init__(self, seed: int) -> None:
        self.n = 0
        self.total: list[int] = []
        self.min: list[int] = []
        self.max: list[int] = []
        self.sample = tuple(array("I") for _ in self.KEYS)  # one column per length, 4 bytes a value
        self.rng = random.Random(seed)

    def add(self, values: Sequence[int]) -> None:
        self.n = n = self.n + 1
        if n == 1:
            self.total, self.min, self.max = list(values), list(values), list(values)
        else:
            total, low, high = self.total, self.min, self.max
            for i, value in enumerate(values):
                total[i] += value
                if value < low[i]:
                    low[i] = value
                elif value > high[i]:
                    high[i] = value
        if n <= _RESERVOIR:
            for column, value in zip(self.sample, values):
                column.append(value)
        else:
            j = self.rng.randrange(n)
            if j < _RESERVOIR:
                for column, value in zip(self.sample, values):
                    column[j] = value

    def summary(self) -> dict[str, Any]:
        if not self.n:
            return {key: {"n": 0} for key in self.KEYS}
        out = {}
        for i, key in enumerate(self.KEYS):
            p50, p95 = np.percentile(np.frombuffer(self.sample[i], dtype=np.uint32), [50, 95]).tolist()
            out[key] = {"n": self.n, "min": self.min[i], "mean": round(self.total[i] / self.n, 1),
                        "p50": p50, "p95": p95, "max": self.max[i]}
        return out


class SplitStats:
    """Counts of one output split, gathered as its records are written."""

    def __init__(self, seed: int) -> None:
        self.records = 0
        self.documents = 0
        self.no_pii = 0
        self.by_source: Counter = Counter()
        self.by_label: Counter = Counter()
        self.heldout: Counter = Counter()
        self.lengths = Lengths(seed)

    def add(self, source: str, window: int, labels: list[str], lengths: Sequence[int], heldout: bool | None) -> None:
        self.records += 1
        self.documents += window == 0
        self.by_source[source] += 1
        if labels:
            by_label = self.by_label
            for label in labels:  # (cheaper than Counter.update for a handful)
                by_label[label] += 1
        elif source != "alpaca":
            self.no_pii += 1
        if heldout is not None:
            self.heldout["true" if heldout else "false"] += 1
        self.lengths.add(lengths)

    def to_card(self) -> dict[str, Any]:
        card = {"records": self.records, "documents": self.documents, "records_without_pii": self.no_pii,
                "by_source": dict(sorted(self.by_source.items())),
                "by_label": dict(sorted(self.by_label.items())),
                "lengths": self.lengths.summary()}
        if self.heldout:
            card["heldout_template"] = dict(sorted(self.heldout.items()))
        return card
