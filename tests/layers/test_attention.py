"""Folded grouped-query attention: transformers' SDPA path's output, for the shapes it folds."""

import pytest
import torch
from tiny import tiny_llama
from transformers.integrations.sdpa_attention import sdpa_attention_forward

from piilab.layers.attention import NAME, additive_mask, folded_attention, folded_sdpa
from piilab.models import arch

pytestmark = pytest.mark.usefixtures("one_thread")


class _Attention(torch.nn.Module):
    num_key_value_groups = 3
    is_causal = True


def _inputs(dtype, length, rows=4, cached=37):
    torch.manual_seed(0)
    query = torch.randn(rows, 9, length, 16, dtype=dtype)
    key, value = (torch.randn(rows, 3, cached, 16, dtype=dtype) for _ in range(2))
    mask = torch.ones(rows, 1, length, cached, dtype=torch.bool).tril(cached - length)
    mask[1, :, :, 3:9] = False  # a padded row
    return query, key, value, mask


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("length", [1, 5, 20])
def test_folded_attention_is_sdpas(dtype, length):
    query, key, value, mask = _inputs(dtype, length)
    module = _Attention()
    got, _ = folded_sdpa(module, query, key, value, mask, scaling=0.25)
    want, _ = sdpa_attention_forward(module, query, key, value, mask, scaling=0.25)
    assert got.shape == want.shape == (4, length, 9, 16)
    # each query attends to the same keys, whether its head's block is folded or not
    assert torch.allclose(got.float(), want.float(), atol=1e-6 if dtype == torch.float32 else 1e-2)


def test_only_short_masked_query_blocks_are_folded(monkeypatch):
    import piilab.layers.attention as attention

    folded = []
    real = torch.nn.functional.scaled_dot_product_attention
    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention",
                        lambda q, *a, **k: folded.append(q.shape[1]) or real(q, *a, **k))
    for length in (5, 20):
        query, key, value, mask = _inputs(torch.float32, length)
        attention.folded_sdpa(_Attention(), query, key, value, mask)
    query, key, value, _ = _inputs(torch.float32, 5)
    attention.folded_sdpa(_Attention(), query, key, value, None)
    assert folded == [3, 9, 9]  # 5 positions x 3 heads folded into 3 key/value heads; the rest not


def test_a_model_decodes_the_same_inside_folded_attention(tokenizer):
    model = tiny_llama(tokenizer, seed=2, num_attention_heads=4, num_key_value_heads=2).eval()
    config = arch.base_model(model).config
    ids = torch.tensor([tokenizer("Jane Doe wrote to jane.doe@example.com")["input_ids"]] * 2)
    mask = torch.ones_like(ids)
    mask[1, :3] = 0
    with torch.no_grad():
        out = model(input_ids=ids[:, :-3], attention_mask=mask[:, :-3], use_cache=True)
        want = model(input_ids=ids[:, -3:], attention_mask=mask,
                     past_key_values=out.past_key_values).logits
        out = model(input_ids=ids[:, :-3], attention_mask=mask[:, :-3], use_cache=True)
        with folded_attention(model):
            assert config._attn_implementation == NAME
            got = model(input_ids=ids[:, -3:], attention_mask=mask,
                        past_key_values=out.past_key_values).logits
    assert config._attn_implementation == "sdpa"
    assert torch.allclose(got, want, atol=1e-5)


def test_a_bool_mask_is_converted_once_while_it_is_unchanged():
    _, _, _, mask = _inputs(torch.float32, 5)
    first = additive_mask(mask, torch.bfloat16, 3)
    assert additive_mask(mask, torch.bfloat16, 3) is first  # the next layer of the pass
    rows = mask.repeat(1, 1, 3, 1)  # folded: row j*T + t is position t's
    assert first.shape == (4, 1, 15, 37) and first.dtype == torch.bfloat16
    assert torch.equal(first == 0, rows) and bool((first[~rows] == float("-inf")).all())
    assert additive_mask(mask, torch.float32, 3) is not first  # another dtype, another mask
    mask[0, 0, 0, 0] = False  # changed in place: converted again
    again = additive_mask(mask, torch.bfloat16, 3)
    assert again is not first and again[0, 0, 0, 0] == float("-inf")


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_the_additive_mask_attends_as_its_bool_mask_does(dtype):
    query, key, value, mask = _inputs(dtype, 5)
    sdpa = torch.nn.functional.scaled_dot_product_attention
    want = sdpa(query, key, value, attn_mask=mask, enable_gqa=True)
    got = sdpa(query, key, value, attn_mask=additive_mask(mask, dtype), enable_gqa=True)
    assert torch.equal(got, want)  # the same values SDPA makes of a bool mask: the same sums


def test_overlapping_decodings_keep_grouped_heads_on_until_the_last_leaves(monkeypatch):
    # two models decoding in two threads: A enters, B enters, A leaves, B leaves
    import os
    from contextlib import ExitStack

    from piilab.layers.attention import _FORCE_GQA, grouped_kv_in_sdpa

    monkeypatch.setenv(_FORCE_GQA, "0")  # the user's own setting, restored at the end
    cpu = torch.device("cpu")
    a, b = ExitStack(), ExitStack()
    a.enter_context(grouped_kv_in_sdpa(cpu))
    b.enter_context(grouped_kv_in_sdpa(cpu))
    a.close()
    assert os.environ[_FORCE_GQA] == "1"  # B still decoding
    b.close()
    assert os.environ[_FORCE_GQA] == "0"
