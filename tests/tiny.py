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


# One small config per architecture in piilab.models.arch.ARCHITECTURES (3 decoder layers each).
SMALL = dict(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=3,
             num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64)
ARCH_CONFIGS = {
    "llama": SMALL,
    "mistral": SMALL,
    "qwen2": SMALL,
    "qwen3": {**SMALL, "head_dim": 8},
    "gemma": {**SMALL, "head_dim": 8},
    "gemma3_text": {**SMALL, "head_dim": 8, "final_logit_softcapping": 30.0,
                    "sliding_window": 4},
    "phi": SMALL,
    "phi3": {**SMALL, "pad_token_id": 0, "eos_token_id": 1, "bos_token_id": 1},
    "gpt2": dict(vocab_size=64, n_embd=16, n_layer=3, n_head=2, n_positions=64),
    "gpt_neox": {**SMALL, "rotary_pct": 0.5},
}


def tiny_of_type(model_type: str, tokenizer, **overrides):
    """A 3-layer random model of `model_type` sized for the tiny tokenizer, in eval mode."""
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.manual_seed(0)
    settings = {**ARCH_CONFIGS[model_type], "vocab_size": len(tokenizer), "max_position_embeddings": 128,
                "pad_token_id": tokenizer.pad_token_id, "eos_token_id": tokenizer.eos_token_id,
                "bos_token_id": tokenizer.bos_token_id, **overrides}
    return AutoModelForCausalLM.from_config(AutoConfig.for_model(model_type, **settings)).eval()


def lora_batch(tokenizer, make=None, **model_kwargs):
    """A LoRA-wrapped tiny model (`make`, default tiny_llama) in training mode, and a padded
    batch of three records whose rows share a prompt prefix."""
    from peft import LoraConfig, get_peft_model
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    from piilab.models.prompts import default_format
    from piilab.train import encode_record

    fmt = default_format(tokenizer)
    prefix = "Find the personal information in the text below. "
    pairs = [("Jane Doe wrote.", "Jane Doe (NAME)"), ("Call +1 555 010 2000 today.", "+1 555 010 2000 (PHONE_NUM)"),
             ("Paris.", "None")]
    rows = [encode_record({"prompt": prefix + t, "completion": c}, tokenizer, fmt) for t, c in pairs]
    batch = DataCollatorForLanguageModeling(pad_token_id=tokenizer.pad_token_id)(rows)
    model = get_peft_model((make or tiny_llama)(tokenizer, seed=1, **model_kwargs),
                           LoraConfig(r=4, target_modules="all-linear", lora_dropout=0.0, init_lora_weights=False))
    return model.train(), batch
