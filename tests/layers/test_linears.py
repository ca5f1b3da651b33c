"""Decoding-time linear copies: LoRA merged (and bf16) inside the context, the model whole after."""

import pytest
import torch
from peft import LoraConfig, get_peft_model
from tiny import tiny_llama

from piilab.errors import PiilabError
from piilab.layers.linears import FrozenLinear, linears_swapped
from piilab.models import arch

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def lora_model(tokenizer):
    model = get_peft_model(tiny_llama(tokenizer, seed=2),
                           LoraConfig(r=4, target_modules="all-linear", init_lora_weights=False))
    return model.eval()


def logits(model, ids):
    with torch.no_grad():
        return model(input_ids=ids).logits


@pytest.mark.parametrize("precision,tolerance", [("merged", 1e-5), ("bfloat16", 5e-2)])
def test_swapped_linears_compute_the_adapted_model(lora_model, tokenizer, precision, tolerance):
    ids = torch.tensor([tokenizer("Jane Doe wrote to jane.doe@example.com")["input_ids"]])
    want = logits(lora_model, ids)
    with linears_swapped(lora_model, precision):
        swapped = [m for m in arch.decoder_layers(lora_model).modules() if isinstance(m, FrozenLinear)]
        assert len(swapped) == 7 * 4  # q k v o gate up down, in each of 4 blocks
        got = logits(lora_model, ids)
    assert torch.allclose(got, want, atol=tolerance), (got - want).abs().max()
    with lora_model.disable_adapter():
        base = logits(lora_model, ids)
    assert not torch.allclose(base, want, atol=1e-3)  # the adapter matters, so it was merged in
    assert not any(isinstance(m, FrozenLinear) for m in lora_model.modules())  # whole again
    assert torch.equal(logits(lora_model, ids), want)


def test_exact_leaves_the_model_and_unknown_precisions_fail(lora_model):
    with linears_swapped(lora_model, "exact"):
        assert not any(isinstance(m, FrozenLinear) for m in lora_model.modules())
    with pytest.raises(PiilabError, match="unknown linear precision"):
        with linears_swapped(lora_model, "int3"):
            pass


def test_bfloat16_blocks_compute_in_bf16_and_the_head_in_the_models_dtype(lora_model, tokenizer):
    ids = torch.tensor([tokenizer("Jane Doe wrote to jane.doe@example.com")["input_ids"]])
    blocks = arch.decoder_layers(lora_model)
    norms = [p for name, p in blocks.named_parameters() if "norm" in name]
    before = [p.detach().clone() for p in norms]
    with linears_swapped(lora_model, "bfloat16"), torch.no_grad():
        assert {p.dtype for p in norms} == {torch.bfloat16}
        out = arch.base_model(lora_model).model(input_ids=ids, use_cache=True)
        assert out.last_hidden_state.dtype == torch.float32  # the final norm keeps float32
        assert out.past_key_values.layers[0].keys.dtype == torch.bfloat16  # the blocks' own cache
        hidden = out.last_hidden_state.to(torch.bfloat16)
        assert arch.logit_lens(lora_model, hidden).dtype == torch.float32
    assert all(p.dtype == torch.float32 and torch.equal(p, b) for p, b in zip(norms, before))
    assert arch.base_model(lora_model).get_input_embeddings()._forward_hooks == {}


def test_shortlist_head_is_exact_for_the_likely_tokens():
    """bf16 scores everywhere, the head's own (float32) logits for each position's shortlist: the
    best tokens and their order are the exact head's, though bf16 alone would misorder them."""
    from piilab.layers.linears import ShortlistHead

    torch.manual_seed(0)
    head = torch.nn.Linear(32, 4096, bias=True)
    hidden = torch.randn(2, 5, 32)
    exact = head(hidden).detach()
    got = ShortlistHead(head, shortlist=16)(hidden).detach()
    assert got.shape == exact.shape and got.dtype == torch.float32
    top = exact.topk(10, dim=-1)
    assert torch.equal(got.topk(10, dim=-1).indices, top.indices)
    assert torch.allclose(got.gather(-1, top.indices), top.values, atol=1e-5)
    assert not torch.allclose(got, exact, atol=1e-4)  # the rest are bf16 products
    coarse = torch.nn.functional.linear(hidden.bfloat16(), head.weight.bfloat16(), head.bias.bfloat16())
    assert not torch.equal(coarse.float().topk(10, dim=-1).indices, top.indices)


def test_bfloat16_swaps_in_a_shortlist_head_and_restores_the_model_s(lora_model):
    from piilab.layers.linears import ShortlistHead

    head = arch.unembedding(lora_model)
    with linears_swapped(lora_model, "bfloat16"):
        assert isinstance(arch.unembedding(lora_model), ShortlistHead)
    assert arch.unembedding(lora_model) is head
