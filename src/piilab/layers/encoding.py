"""Prompts to token ids, checked: a prompt that cannot be decoded is named before any decoding."""

from __future__ import annotations

from collections.abc import Sequence

from piilab.errors import PiilabError


def encode_prompts(tokenizer, prompts: Sequence[str | list[int]], **checks) -> list[list[int]]:
    """Each prompt's token ids (encode_prompt); an error names the prompt by its place."""
    if isinstance(prompts, str):
        raise PiilabError("prompts must be a list of strings, not one string")
    encoded = []
    for i, prompt in enumerate(prompts):
        try:
            encoded.append(encode_prompt(tokenizer, prompt, **checks))
        except PiilabError as err:
            raise PiilabError(f"prompt {i} {err}") from None
    return encoded


def encode_prompt(tokenizer, prompt: str | list[int], *, add_special_tokens: bool = True,
                  context_window: int | None = None, max_new_tokens: int = 0) -> list[int]:
    """A prompt's token ids: a string's as tokenized (special tokens too), a list's as given. A
    PiilabError says what keeps it from being decoded ("is empty"; the caller names the prompt)."""
    ids = prompt
    if isinstance(prompt, str) and prompt.strip():
        ids = tokenizer(prompt, add_special_tokens=add_special_tokens)["input_ids"]
    elif not isinstance(prompt, list):
        raise PiilabError("is empty")
    if not ids:
        raise PiilabError("has no tokens")
    if context_window and len(ids) > context_window:
        raise PiilabError(f"is longer than the context window ({len(ids)} tokens > {context_window})")
    if context_window and len(ids) + max_new_tokens > context_window:
        raise PiilabError(f"has {len(ids)} tokens: with {max_new_tokens} new tokens it would pass the "
                          f"context window of {context_window}; lower --max-new-tokens or shorten it")
    return list(ids)
