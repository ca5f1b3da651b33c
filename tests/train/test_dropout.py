"""LoRA dropout on a CPU from packed random bits: nn.Dropout's behaviour, a cheaper mask."""

from __future__ import annotations

import pytest
import torch
from tiny import tiny_llama
from torch import nn

from piilab.train.dropout import MaskDropout, keep_mask, use_mask_dropout


@pytest.mark.parametrize("p", [0.05, 0.1, 0.5])
def test_masks_keep_each_element_with_probability_one_minus_p(p):
    torch.manual_seed(0)
    keep = keep_mask(torch.Size([1000, 1001]), p)  # an odd count: the last word is cut
    assert keep.dtype == torch.bool and keep.shape == (1000, 1001)
    assert keep.float().mean().item() == pytest.approx(1 - p, abs=0.002)
    # the four draws of each 64-bit word are independent: each lane keeps at the same rate
    lanes = keep.flatten()[:1_000_000].view(-1, 4).float().mean(0)
    assert torch.allclose(lanes, torch.full((4,), 1 - p), atol=0.004)
    assert keep_mask(torch.Size([7]), 0.0).all()


def test_forward_scales_the_kept_and_backward_passes_through_the_same_mask():
    torch.manual_seed(1)
    x = torch.randn(8, 33, 64, requires_grad=True)
    dropout = MaskDropout(0.25).train()
    y = dropout(x)
    kept = y != 0
    assert 0.70 < kept.float().mean().item() < 0.80
    assert torch.allclose(y[kept], x[kept] / 0.75)
    y.backward(torch.ones_like(y))
    assert torch.equal(x.grad, kept.float() / 0.75)


def test_a_seed_repeats_the_masks_and_eval_mode_or_p_0_is_the_identity():
    x = torch.randn(4, 16)
    torch.manual_seed(3)
    first = MaskDropout(0.5).train()(x)
    torch.manual_seed(3)
    assert torch.equal(MaskDropout(0.5).train()(x), first)
    assert MaskDropout(0.5).eval()(x) is x and MaskDropout(0.0).train()(x) is x
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        MaskDropout(1.0)


def test_every_lora_layers_dropout_is_swapped_and_training_still_learns(tokenizer):
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(tiny_llama(tokenizer), LoraConfig(r=4, target_modules="all-linear",
                                                             lora_dropout=0.1))
    lora_layers = [m for m in model.modules() if isinstance(getattr(m, "lora_dropout", None), nn.ModuleDict)]
    assert use_mask_dropout(model) == len(lora_layers) > 0
    assert all(type(m.lora_dropout["default"]) is MaskDropout and m.lora_dropout["default"].p == 0.1
               for m in lora_layers)
    assert use_mask_dropout(model) == 0  # nothing left to swap
    ids = torch.randint(0, tokenizer.vocab_size, (2, 12))
    model.train()
    lora_a = {n: p.detach().clone() for n, p in model.named_parameters() if "lora_A" in n}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    losses = []
    for _ in range(20):
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.3
    # gradients reach every A matrix through the dropped inputs
    assert all(not torch.equal(p, lora_a[n]) for n, p in model.named_parameters() if n in lora_a)
