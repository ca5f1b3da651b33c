"""A model ready to find PII as `piilab extract` does, from Python.

`piilab.extract.extract` is the engine: every setting is an argument, and its defaults are the
plain ones (piilab's default prompt, no validators, no second look). `Extractor.load` takes what
the command takes by default instead: the adapter's prompt settings and prompt format, its
second look's threshold, the validators chosen on the real-text dev set, extract's speed-ups.

    finder = Extractor.load()                  # the shipped piilab-pii
    [found] = finder(["Write to Jane Doe at jane@example.org"])
    with finder.prepared():                    # a text at a time: prepare the model once
        for text in requests:
            [found] = finder([text])
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import piilab.extract as engine  # looked up at each call, so a patched engine is the one used
from piilab.extract import BATCH_SIZE, Extraction, SpeedUps
from piilab.models.prompts import PromptFormat
from piilab.models.shipped import SHIPPED_DEFAULT
from piilab.pii_prompt import PromptSettings
from piilab.second_look import THRESHOLD
from piilab.shapes import EXTRACT_MODES


@dataclass
class Extractor:
    """A loaded model and the settings `piilab extract` would use with it; call it on texts."""

    model: Any
    tokenizer: Any
    settings: PromptSettings = field(default_factory=PromptSettings)
    """The prompt as training wrote it (style, labels, windows)."""
    prompt_format: PromptFormat | None = None
    """How a prompt is rendered for the model (None: the tokenizer's chat template, if any)."""
    second_look: float = THRESHOLD
    validators: tuple[str, ...] = EXTRACT_MODES
    layer: int | None = None
    """Exit layer (None: the last)."""
    lens: str = "norm"
    decoding: Any = None
    """A piilab.layers.decode.Decoding (None: greedy, at most 128 new tokens)."""
    speedups: SpeedUps = field(default_factory=SpeedUps)
    constrain: bool = True
    batch_size: int = BATCH_SIZE
    progress: bool = False

    @classmethod
    def load(cls, model: str = SHIPPED_DEFAULT, adapter: str | None = None, *,
             device: str = "auto", dtype: str = "auto", trust_remote_code: bool = False,
             **options: Any) -> "Extractor":
        """Load `model` (and `adapter`) with the prompt settings, prompt format and second-look
        threshold saved beside its adapter, as `piilab extract` does; `options` set any other
        field, or replace those."""
        from piilab.models import load_model, trained_folder
        from piilab.models.prompts import format_for
        from piilab.pii_prompt import prompt_settings
        from piilab.second_look import threshold_for

        folder = trained_folder(model, adapter)
        loaded, tokenizer = load_model(model, adapter, device=device, dtype=dtype,
                                       trust_remote_code=trust_remote_code)
        saved = {"settings": prompt_settings(folder), "prompt_format": format_for(tokenizer, folder),
                 "second_look": threshold_for(folder)[0]}
        return cls(loaded, tokenizer, **{**saved, **options})

    def __call__(self, texts: Sequence[str]) -> list[Extraction]:
        """The PII of each text (piilab.extract.extract with these settings)."""
        return engine.extract(self.model, self.tokenizer, texts, layer=self.layer,
                       settings=self.settings, prompt_format=self.prompt_format, lens=self.lens,
                       decoding=self.decoding, batch_size=self.batch_size,
                       progress=self.progress, speedups=self.speedups,
                       constrain=self.constrain, validators=self.validators,
                       second_look=self.second_look)

    def prepared(self):
        """A context in which calls reuse the model's preparation (piilab.extract.prepared)."""
        return engine.prepared(self.model, self.speedups)
