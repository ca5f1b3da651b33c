"""How `extract` phrases a PII prompt: the settings the model's training used (prompt style,
label set, window size), read from the trained folder; the prompt for one text; the start
every prompt shares; and the windows a long text is cut into.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from piilab.errors import PiilabError
from piilab.models.prompts import PromptFormat

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


SETTINGS_FILE = "prompt_settings.json"  # written into RUN_DIR by `piilab train` and `piilab merge`


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


def data_settings(data: str | Path) -> PromptSettings:
    """The prompt settings a dataset folder was built with (its card.json), for training to keep."""
    card_path = Path(data) / "card.json"
    if Path(data).is_dir() and card_path.is_file():
        try:
            return _card_settings(json.loads(card_path.read_text()), str(card_path.resolve()))
        except (OSError, ValueError, TypeError, AttributeError):
            raise PiilabError(f"{card_path}: unreadable dataset card") from None
    return PromptSettings(source=f"piilab defaults ({data} has no card.json)")


def save_settings(settings: PromptSettings, folder: str | Path) -> None:
    """Write prompt_settings.json, so the folder prompts the same wherever it is used from."""
    from dataclasses import asdict

    from piilab.io import write_json

    values = asdict(settings)
    values["labels"] = list(settings.labels) if settings.labels else None
    write_json(Path(folder) / SETTINGS_FILE, values)


def _load_settings(path: Path) -> PromptSettings:
    try:
        values = json.loads(path.read_text())
        labels = values.get("labels")
        return PromptSettings(style=str(values["style"]), labels=tuple(labels) if labels else None,
                              max_chars=int(values["max_chars"]), overlap=int(values["overlap"]),
                              source=str(path))
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        raise PiilabError(f"{path}: unreadable prompt settings") from None


def _trained_data_folder(config_path: Path) -> Path | None:
    """The data folder an older run folder names in train_config.json, as an absolute path.

    The fingerprint's path was resolved when training ran; the config's own `data` may be
    relative to a working directory long gone, so it is only trusted when absolute.
    """
    try:
        saved = json.loads(config_path.read_text())
        candidates = [(saved.get("data") or {}).get("path"), (saved.get("config") or {}).get("data")]
    except (OSError, ValueError, TypeError, AttributeError):
        log.warning("%s: unreadable; prompt settings fall back to defaults", config_path)
        return None
    for candidate in candidates:
        if isinstance(candidate, str) and Path(candidate).is_absolute():
            return Path(candidate)
    return None


def prompt_settings(model_dir: str | Path | None = None) -> PromptSettings:
    """The prompt settings an adapter (or merged model) folder was trained with.

    Reads the folder's own prompt_settings.json (written by training); for a folder from an
    older piilab, its `card.json` or the card of the dataset folder named by its
    `train_config.json`. Never a path relative to the working directory. Falls back to
    piilab's defaults (logged).
    """
    if model_dir:
        folder = Path(model_dir)
        if (folder / SETTINGS_FILE).is_file():
            return _load_settings(folder / SETTINGS_FILE)
        candidates = [folder / "card.json"]
        config_path = folder / "train_config.json"
        if config_path.is_file():
            data = _trained_data_folder(config_path)
            if data is not None:
                candidates.append(data / "card.json")
        for card_path in candidates:
            if card_path.is_file():
                try:
                    return _card_settings(json.loads(card_path.read_text()), str(card_path))
                except (OSError, ValueError, TypeError, AttributeError):
                    raise PiilabError(f"{card_path}: unreadable dataset card") from None
        if config_path.is_file():
            log.warning("%s: a trained folder without %s or a readable training card; prompting "
                        "with piilab's defaults", folder, SETTINGS_FILE)
            return PromptSettings()
    log.info("prompt style and labels: piilab defaults (no training card found)")
    return PromptSettings()


def pii_prompt(tokenizer, text: str, settings: PromptSettings, fmt: PromptFormat) -> str:
    """The exact model input for one text: the style's instruction, through the prompt format."""
    from piilab.data.instruct import get_style
    from piilab.data.labels import DEFAULT_LABELS

    instruction = get_style(settings.style).pii(text, settings.labels or DEFAULT_LABELS)
    return fmt.render(tokenizer, instruction)


def template_start(tokenizer, settings: PromptSettings, fmt: PromptFormat) -> list[int]:
    """The token ids every extraction prompt begins with (chat template, instruction, label
    definitions): those of two prompts' whose texts share nothing."""
    a, b = (tokenizer(pii_prompt(tokenizer, text, settings, fmt),
                      add_special_tokens=fmt.add_special_tokens)["input_ids"] for text in ("1", "Z"))
    return os.path.commonprefix([a, b])


def text_windows(text: str, settings: PromptSettings) -> list[str]:
    """The text as training would window it (one window when it is short enough)."""
    from piilab.data.instruct import windows
    from piilab.data.records import Document

    return [w.text for w in windows(Document("extract", text), settings.max_chars, settings.overlap)]
