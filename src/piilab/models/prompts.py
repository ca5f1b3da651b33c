"""How an instruction prompt becomes the exact text a model reads, in training and decoding alike.

Training saves its `PromptFormat` beside the adapter (`prompt_format.json`) and every later stage
loads it from there, so tuned models are always prompted the way they were trained.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from piilab.errors import PiilabError
from piilab.io import write_json

FILENAME = "prompt_format.json"
PLAIN_TEMPLATE = "{prompt}\n\nAnswer:\n"


@dataclass(frozen=True)
class PromptFormat:
    """Either the model's chat template (one user turn) or a plain text template."""

    kind: str = "chat"
    """'chat' (the tokenizer's chat template) or 'plain' (`template` with {prompt})."""
    template: str = PLAIN_TEMPLATE
    """Plain-format template; unused for 'chat'."""
    chat_template: str | None = None
    """The chat template itself, saved so a later tokenizer change cannot alter prompts."""
    system: str | None = None
    """An optional system message for chat templates."""

    def __post_init__(self) -> None:
        if self.kind not in ("chat", "plain"):
            raise PiilabError(f"prompt format kind must be 'chat' or 'plain', not {self.kind!r}")
        if self.kind == "plain" and "{prompt}" not in self.template:
            raise PiilabError("a plain prompt template must contain {prompt}")

    @property
    def add_special_tokens(self) -> bool:
        """Chat templates write their own BOS; plain text needs the tokenizer to add it."""
        return self.kind == "plain"

    def render(self, tokenizer, prompt: str) -> str:
        """The model input for one prompt, ending where the answer should begin."""
        if self.kind == "plain":
            return self.template.replace("{prompt}", prompt)
        messages = [{"role": "user", "content": prompt}]
        if self.system:
            messages.insert(0, {"role": "system", "content": self.system})
        return tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True,
            chat_template=self.chat_template or tokenizer.chat_template,
        )

    def save(self, directory: str | Path) -> None:
        write_json(Path(directory) / FILENAME, asdict(self))

    @classmethod
    def load(cls, directory: str | Path) -> "PromptFormat":
        path = Path(directory) / FILENAME
        try:
            return cls(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError) as err:
            raise PiilabError(f"{path}: unreadable prompt format ({err})") from None


def default_format(tokenizer, kind: str = "auto") -> PromptFormat:
    """The model's chat template when it has one, else the plain template."""
    template = getattr(tokenizer, "chat_template", None)
    if kind == "chat" and not template:
        raise PiilabError("--prompt-format chat: this tokenizer has no chat template")
    if kind == "plain" or not template:
        return PromptFormat(kind="plain")
    return PromptFormat(kind="chat", chat_template=template)


def format_for(tokenizer, adapter_dir: str | Path | None = None) -> PromptFormat:
    """The format saved beside an adapter, or the model's default for a vanilla model."""
    if adapter_dir and (Path(adapter_dir) / FILENAME).exists():
        return PromptFormat.load(adapter_dir)
    return default_format(tokenizer)
