"""Find PII in a user's text with a (tuned) model: prompt as training did, decode, parse, place.

The prompt is built the way training built it: the prompt style and label set of the adapter's
training data (read from its card), rendered with the prompt format saved beside the adapter.
Texts longer than training's window size are cut into the same overlapping windows; the answers
of all windows are merged. Every item the model names is then looked up in the text: each place
it occurs becomes a start/end; a value that occurs nowhere was invented by the model and is
reported apart, never placed.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from piilab.data.answer import parse_answer
from piilab.errors import PiilabError
from piilab.models.prompts import PromptFormat, format_for

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PromptSettings:
    """How training phrased PII prompts, so extraction can phrase them the same way."""

    style: str = "default"
    """Prompt style name (piilab.data.instruct.PROMPT_STYLES)."""
    labels: tuple[str, ...] | None = None
    """Label set named in the prompt (None: piilab's default seven)."""
    max_chars: int = 2000
    """Window size in characters; longer texts are cut into windows."""
    overlap: int = 200
    """Characters shared by consecutive windows."""
    source: str = "piilab defaults"
    """Where these settings came from."""


def _card_settings(card: dict[str, Any], source: str) -> PromptSettings:
    config = card.get("config", {})
    labels = card.get("labels")
    return PromptSettings(
        style=card.get("prompt_style", "default"),
        labels=tuple(labels) if labels else None,
        max_chars=int(config.get("max_chars", 2000)),
        overlap=int(config.get("overlap", 200)),
        source=source,
    )


def prompt_settings(model_dir: str | Path | None = None) -> PromptSettings:
    """The prompt settings an adapter (or merged model) folder was trained with.

    Looks for the training data's card: `card.json` in the folder, or the dataset folder named
    by its `train_config.json`. Falls back to piilab's defaults (logged).
    """
    if model_dir:
        folder = Path(model_dir)
        candidates = [folder / "card.json"]
        config_path = folder / "train_config.json"
        if config_path.is_file():
            try:
                data = json.loads(config_path.read_text())["config"]["data"]
                candidates.append(Path(data) / "card.json")
            except (OSError, ValueError, KeyError, TypeError):
                log.warning("%s: unreadable; prompt settings fall back to defaults", config_path)
        for card_path in candidates:
            if card_path.is_file():
                try:
                    return _card_settings(json.loads(card_path.read_text()), str(card_path))
                except (OSError, ValueError, TypeError):
                    raise PiilabError(f"{card_path}: unreadable dataset card") from None
    log.info("prompt style and labels: piilab defaults (no training card found)")
    return PromptSettings()


def pii_prompt(tokenizer, text: str, settings: PromptSettings, fmt: PromptFormat) -> str:
    """The exact model input for one text: the style's instruction, through the prompt format."""
    from piilab.data.instruct import get_style
    from piilab.data.labels import DEFAULT_LABELS

    instruction = get_style(settings.style).pii(text, settings.labels or DEFAULT_LABELS)
    return fmt.render(tokenizer, instruction)


def text_windows(text: str, settings: PromptSettings) -> list[str]:
    """The text as training would window it (one window when it is short enough)."""
    from piilab.data.instruct import windows
    from piilab.data.records import Document

    return [w.text for w in windows(Document("extract", text), settings.max_chars, settings.overlap)]


# ---------------------------------------------------------------- placing answers in the text


def _bounded(body: str, value: str) -> str:
    """`body` (a pattern for `value`) allowed only where it starts and ends a token.

    A value that begins or ends with a word character must not touch another one there ("Ann"
    is not in "Annual" or "Hanna"; "555-1234" is not in "1555-12345"); a value that begins or
    ends with punctuation ("@user", "(555) 010") carries its own boundary on that side.
    """
    head = r"(?<!\w)" if re.match(r"\w", value[0]) else ""
    tail = r"(?!\w)" if re.match(r"\w", value[-1]) else ""
    return head + body + tail


def locate(text: str, value: str) -> list[tuple[int, int]]:
    """Every (start, end) where `value` occurs in `text` as whole tokens.

    Exact matches first; if there are none, matches that differ only in letter case or in
    whitespace (the answer writes an address over two lines on one line). Either way a match
    never starts or ends inside a word (design.md, "Answer format").
    """
    value = value.strip()
    if not value:
        return []
    exact = re.compile(_bounded(re.escape(value), value))
    found = [(m.start(), m.end()) for m in exact.finditer(text)]
    if found:
        return found
    loose = re.compile(_bounded(r"\s+".join(map(re.escape, value.split())), value), re.IGNORECASE)
    return [(m.start(), m.end()) for m in loose.finditer(text)]


@dataclass
class Extraction:
    """The PII a model found in one text."""

    text: str
    layer: int
    answers: list[str]
    """The model's raw answer per window."""
    items: list[dict[str, Any]] = field(default_factory=list)
    """{value, label, spans: [{start, end}]} for each item that occurs in the text."""
    invented: list[dict[str, str]] = field(default_factory=list)
    """{value, label} for each item that occurs nowhere in the text."""

    def to_dict(self) -> dict[str, Any]:
        return {"layer": self.layer, "items": self.items, "invented": self.invented,
                "answers": self.answers}

    def redacted(self) -> str:
        """The text with every placed item replaced by [LABEL] (longest first where they overlap)."""
        spans = sorted(((s["start"], s["end"], item["label"]) for item in self.items
                        for s in item["spans"]), key=lambda s: (s[0], -(s[1] - s[0])))
        out, at = [], 0
        for start, end, label in spans:
            if start < at:
                continue  # overlaps a span already masked
            out += [self.text[at:start], f"[{label}]"]
            at = end
        return "".join(out) + self.text[at:]


def place(text: str, items: Sequence[tuple[str, str]]) -> tuple[list[dict], list[dict]]:
    """(placed items with their spans, invented items), each (value, label) once, in answer order."""
    placed, invented, seen = [], [], set()
    for value, label in items:
        if (value, label) in seen:
            continue
        seen.add((value, label))
        spans = locate(text, value)
        if spans:
            placed.append({"value": value, "label": label,
                           "spans": [{"start": s, "end": e} for s, e in spans]})
        else:
            invented.append({"value": value, "label": label})
    return placed, invented


# ---------------------------------------------------------------- the API


def extract(
    model,
    tokenizer,
    texts: Sequence[str],
    *,
    layer: int | None = None,
    settings: PromptSettings | None = None,
    prompt_format: PromptFormat | None = None,
    lens: str = "norm",
    decoding=None,
    batch_size: int = 8,
    progress: bool = True,
) -> list[Extraction]:
    """Find the PII in each text, decoding from exit `layer` (default: the last)."""
    from piilab.layers.decode import Decoding, generate
    from piilab.models import arch

    settings = settings or PromptSettings()
    fmt = prompt_format or format_for(tokenizer)
    decoding = decoding or Decoding(max_new_tokens=128)
    layer = arch.num_layers(model) if layer is None else layer
    owners, prompts = [], []
    for i, text in enumerate(texts):
        if not isinstance(text, str) or not text.strip():
            raise PiilabError(f"text {i} is empty")
        for window in text_windows(text, settings):
            owners.append(i)
            prompts.append(pii_prompt(tokenizer, window, settings, fmt))
    log.info("extracting PII from %d texts (%d windows) at layer %d, style %s", len(texts),
             len(prompts), layer, settings.style)
    answers = generate(model, tokenizer, prompts, [layer], lens=lens, decoding=decoding,
                       batch_size=batch_size, add_special_tokens=fmt.add_special_tokens,
                       progress=progress)[layer]
    results = []
    for i, text in enumerate(texts):
        mine = [answer for owner, answer in zip(owners, answers) if owner == i]
        placed, invented = place(text, [item for answer in mine for item in parse_answer(answer)])
        results.append(Extraction(text, layer, mine, placed, invented))
    return results
