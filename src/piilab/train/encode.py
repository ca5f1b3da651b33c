"""Records -> token ids and labels, tokenized exactly as generation will see the prompt."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

PAD_CANDIDATES = ("<|endoftext|>", "<|finetune_right_pad_id|>", "<|pad|>", "<pad>", "[PAD]", "<unk>")
IGNORE_INDEX = -100


@dataclass(frozen=True)
class EncodeStats:
    kept: int
    skipped_long: int
    skipped_empty: int


def encode_record(record: dict[str, Any], tokenizer, fmt) -> dict[str, list[int]]:
    """Token ids and labels for one prompt-completion record: labels -100 on the prompt.

    The prompt is rendered and tokenized exactly as generation will (`fmt.render`, with the
    format's own `add_special_tokens`); the answer is tokenized on its own and ends in EOS.
    """
    prompt_ids = tokenizer(
        fmt.render(tokenizer, record["prompt"]), add_special_tokens=fmt.add_special_tokens
    )["input_ids"]
    answer_ids = tokenizer(record["completion"], add_special_tokens=False)["input_ids"]
    answer_ids = [*answer_ids, tokenizer.eos_token_id]
    return {
        "input_ids": [*prompt_ids, *answer_ids],
        "labels": [IGNORE_INDEX] * len(prompt_ids) + answer_ids,
    }


def encode_records(records: Iterable[dict[str, Any]], tokenizer, fmt, max_length: int) -> tuple[list[dict], EncodeStats]:
    """Encode records, skipping (and counting) those without an answer or longer than max_length."""
    rows, long_, empty = [], 0, 0
    for record in records:
        if not record.get("prompt") or record.get("completion") in (None, ""):
            empty += 1
            continue
        row = encode_record(record, tokenizer, fmt)
        if len(row["input_ids"]) > max_length:
            long_ += 1
            continue
        rows.append(row)
    return rows, EncodeStats(len(rows), long_, empty)


def read_split(data: str | os.PathLike, split: str) -> list[dict[str, Any]]:
    """The checked records of one split of a dataset folder (or of a single .jsonl file)."""
    from piilab.data.dataset import read_records

    return read_records(data, split)


def choose_pad_token(tokenizer) -> str | None:
    """A pad token that is not EOS, from tokens the vocabulary already has (no resizing).

    Returns the token to set, or None to keep the current one (already distinct, or nothing else
    to use: then pad == EOS stays, which is harmless here because labels come from masks).
    """
    eos, pad = tokenizer.eos_token, tokenizer.pad_token
    if pad is not None and pad != eos:
        return None
    vocab = tokenizer.get_vocab()
    for token in (tokenizer.unk_token, *PAD_CANDIDATES):
        if token and token != eos and token in vocab and token != tokenizer.bos_token:
            return token
    return None
