"""Lean Llama blocks: transformers' block's sums with the same bf16 copies, in fewer operations."""

import pytest
import torch
from tiny import tiny_llama, tiny_of_type

from piilab.layers import linears
from piilab.layers.decode import Decoding
from piilab.layers.linears import linears_swapped
from piilab.layers.lookup import lookup_generate
from piilab.models import arch

pytestmark = pytest.mark.usefixtures("one_thread")

TEXTS = ["Find the names. Text: Jane Doe wrote to jane.doe@example.com about order 55-123.",
         "Find the names. Text: Call +1 555 010 2000.",
         "Find the names. Text: The student Ana Silva lives at 12 Oak Street, Springfield."]


def _llama(tokenizer, **overrides):
    """A tiny Llama whose norms weigh their dimensions unevenly (a fresh one weighs all by 1)."""
    model = tiny_llama(tokenizer, **overrides)
    with torch.no_grad():
        for module in model.modules():
            if type(module).__name__ == "LlamaRMSNorm":
                module.weight.uniform_(0.5, 1.5)
    return model


def _blocks(model) -> set[str]:
    return {type(block).__name__ for block in arch.decoder_layers(model)}


def _prefill_then_step(model, tokenizer):
    """Logits of a left-padded batch's prefill, then of three more tokens on its cache."""
    batch = tokenizer(TEXTS, return_tensors="pt", padding=True, padding_side="left")
    device = next(model.parameters()).device
    ids, mask = batch["input_ids"].to(device), batch["attention_mask"].to(device)
    with torch.no_grad():
        first = model(input_ids=ids[:, :-3], attention_mask=mask[:, :-3], use_cache=True)
        then = model(input_ids=ids[:, -3:], attention_mask=mask, cache=first.past_key_values)
    return torch.cat([first.logits, then.logits], dim=1)


@pytest.mark.parametrize("bias,device", [
    (False, "cpu"), (True, "cpu"),
    pytest.param(False, "cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA"))])
def test_a_lean_block_sums_as_transformers_block_does_with_the_same_copies(tokenizer, monkeypatch, bias,
                                                                        device):
    model = _llama(tokenizer, seed=2, attention_bias=bias).to(device)
    exact = _prefill_then_step(model, tokenizer)
    with linears_swapped(model, "bfloat16"):
        assert _blocks(model) == {"LeanBlock"}
        lean = _prefill_then_step(model, tokenizer)
    monkeypatch.setattr(linears, "_leanable", lambda block: False)
    with linears_swapped(model, "bfloat16"):
        assert _blocks(model) == {"LlamaDecoderLayer"}
        plain = _prefill_then_step(model, tokenizer)
    assert _blocks(model) == {"LlamaDecoderLayer"}
    rounding = (plain - exact).abs().max()  # what bf16 copies cost
    assert rounding > 0
    # the same sums: far closer to each other than bf16 is to float32 (a wrong rotary, norm or
    # fused slice would be off by the logits' own size)
    assert (lean - plain).abs().max() <= rounding / 10


def test_prompt_lookup_decodes_the_same_through_lean_blocks(tokenizer, monkeypatch):
    model = _llama(tokenizer, seed=3)
    decode = dict(decoding=Decoding(max_new_tokens=16), batch_size=2, draft_tokens=3, progress=False)
    with linears_swapped(model, "bfloat16"):
        assert _blocks(model) == {"LeanBlock"}
        lean = lookup_generate(model, tokenizer, TEXTS, **decode)
    monkeypatch.setattr(linears, "_leanable", lambda block: False)
    with linears_swapped(model, "bfloat16"):
        plain = lookup_generate(model, tokenizer, TEXTS, **decode)
    assert lean.token_ids == plain.token_ids and lean.accepted > 0  # drafts' passes went through it


@pytest.mark.parametrize("model_type", ["gpt2", "qwen3", "phi", "mistral"])
def test_only_llamas_own_blocks_are_made_lean(tokenizer, model_type):
    model = tiny_of_type(model_type, tokenizer)
    before = _blocks(model)
    with linears_swapped(model, "bfloat16"):
        assert _blocks(model) == before
    gelu = tiny_llama(tokenizer, hidden_act="gelu")  # another MLP than the SiLU gate
    with linears_swapped(gelu, "bfloat16"):
        assert _blocks(gelu) == {"LlamaDecoderLayer"}
    llama = tiny_llama(tokenizer)
    with linears_swapped(llama, "merged"):  # float32 copies: the model's own blocks
        assert _blocks(llama) == {"LlamaDecoderLayer"}
