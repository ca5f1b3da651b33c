"""Tiny random models built from a config in well under a second, with a tiny tokenizer.

Unit tests use these instead of real weights: same code paths, no downloads.
"""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import GPT2Config, LlamaConfig, PreTrainedTokenizerFast

CORPUS = [
    "Jane Doe wrote to jane.doe@example.com about order 55-123.",
    "Call +1 555 010 2000 or visit https://example.org/~jdoe today.",
    "The student Ana Silva lives at 12 Oak Street, Springfield.",
    "My username is cool_cat_42 and my ID is A1234567.",
    "None NAME EMAIL USERNAME ID_NUM PHONE_NUM URL_PERSONAL STREET_ADDRESS ( )",
    "Find the personal information in the text below. Answer: list each item.",
    "The capital of France is Paris. The quick brown fox jumps over the lazy dog.",
]
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<pad>"]
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

TINY = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=4, num_attention_heads=4)


def tiny_tokenizer(chat: bool = True) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer of about 400 tokens, trained on a few sentences in milliseconds."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=SPECIAL,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    tok.train_from_iterator(CORPUS, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", bos_token="<|im_start|>",
        pad_token="<pad>", unk_token=None,
    )
    if chat:
        fast.chat_template = CHAT_TEMPLATE
    return fast


def tiny_llama(tokenizer, seed: int = 0, **overrides):
    from transformers import LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        **{**TINY, "vocab_size": len(tokenizer), "num_key_value_heads": 2,
           "max_position_embeddings": 256, "tie_word_embeddings": True,
           "bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
           "pad_token_id": tokenizer.pad_token_id, **overrides},
    )
    return LlamaForCausalLM(config).eval()


def tiny_gpt2(tokenizer, seed: int = 0, **overrides):
    from transformers import GPT2LMHeadModel

    torch.manual_seed(seed)
    config = GPT2Config(
        vocab_size=len(tokenizer), n_embd=TINY["hidden_size"], n_layer=TINY["num_hidden_layers"],
        n_head=TINY["num_attention_heads"], n_positions=256,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, **overrides,
    )
    return GPT2LMHeadModel(config).eval()


def save_model_dir(model, tokenizer, path: Path) -> Path:
    """Write a Hugging Face model folder (safetensors + tokenizer), as a user would have."""
    model.save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)
    return path
