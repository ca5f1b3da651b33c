"""Decoding-time linear copies: LoRA merged (and bf16) inside the context, the model whole after."""

import pytest
import torch
from peft import LoraConfig, get_peft_model
from torch import nn
from tiny import tiny_llama

from piilab.errors import PiilabError
from piilab.layers.linears import FrozenLinear, linears_swapped, packed_product
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
        # q k v o gate up down in each of 4 blocks; bf16 Llama blocks are lean: qkv o gate_up down
        assert len(swapped) == {"merged": 7 * 4, "bfloat16": 4 * 4}[precision]
        got = logits(lora_model, ids)
    assert torch.allclose(got, want, atol=tolerance), (got - want).abs().max()
    with lora_model.disable_adapter():
        base = logits(lora_model, ids)
    assert not torch.allclose(base, want, atol=1e-3)  # the adapter matters, so it was merged in
    assert not any(isinstance(m, FrozenLinear) for m in lora_model.modules())  # whole again
    assert torch.equal(logits(lora_model, ids), want)


class Doubled(nn.Linear):
    """A linear layer whose product is not x W^T, as a quantized one's weight is not W."""

    def forward(self, x):
        return 2 * super().forward(x)


def test_lora_over_a_linear_subclass_is_left_to_compute_itself(tokenizer):
    model = tiny_llama(tokenizer, seed=2)
    mlp = model.model.layers[1].mlp
    doubled = Doubled(mlp.down_proj.in_features, mlp.down_proj.out_features, bias=False)
    doubled.load_state_dict(mlp.down_proj.state_dict())
    mlp.down_proj = doubled
    model = get_peft_model(model, LoraConfig(r=4, target_modules="all-linear", init_lora_weights=False))
    ids = torch.tensor([tokenizer("Jane Doe wrote to jane.doe@example.com")["input_ids"]])
    want = logits(model.eval(), ids)
    with linears_swapped(model, "merged"):
        swapped = [m for m in arch.decoder_layers(model).modules() if isinstance(m, FrozenLinear)]
        assert len(swapped) == 7 * 4 - 1  # all but the LoRA layer over the subclass
        assert torch.allclose(logits(model, ids), want, atol=1e-5)


def test_exact_leaves_the_model_and_unknown_precisions_fail(lora_model):
    with linears_swapped(lora_model, "exact"):
        assert not any(isinstance(m, FrozenLinear) for m in lora_model.modules())
    with pytest.raises(PiilabError, match="unknown linear precision"):
        with linears_swapped(lora_model, "int3"):
            pass


@pytest.mark.parametrize("lean", [True, False])
def test_bfloat16_blocks_compute_in_bf16_around_a_residual_stream_in_the_models_dtype(
        lora_model, tokenizer, monkeypatch, lean):
    from piilab.layers import linears

    if not lean:  # transformers' own block, its norms handing bf16 on by a hook
        monkeypatch.setattr(linears, "_leanable", lambda block: False)
    ids = torch.tensor([tokenizer("Jane Doe wrote to jane.doe@example.com")["input_ids"]])
    seen = {}
    with linears_swapped(lora_model, "bfloat16"), torch.no_grad():
        blocks = arch.decoder_layers(lora_model)
        assert (type(blocks[0]).__name__ == "LeanBlock") == lean
        norms = [m for m in blocks.modules() if "norm" in type(m).__name__.lower()]
        assert {p.dtype for m in norms for p in m.parameters()} == {torch.float32}  # their own weights
        assert {p.dtype for name, p in blocks.named_parameters() if "norm" not in name} <= {torch.bfloat16}
        first_product = next(m for m in blocks[1].modules() if isinstance(m, FrozenLinear))
        probes = [blocks[1].register_forward_hook(lambda m, i, o: seen.update(block_in=i[0].dtype,
                                                                                block_out=o.dtype)),
                  first_product.register_forward_hook(lambda m, i, o: seen.update(product_in=i[0].dtype))]
        out = arch.base_model(lora_model).model(input_ids=ids, use_cache=True)
        assert out.last_hidden_state.dtype == torch.float32  # the final norm keeps float32
        assert out.past_key_values.layers[0].keys.dtype == torch.bfloat16  # the blocks' own cache
        hidden = out.last_hidden_state.to(torch.bfloat16)
        assert arch.logit_lens(lora_model, hidden).dtype == torch.float32
        for probe in probes:
            probe.remove()
    # the stream between blocks stays float32; the block's products take bf16
    assert seen == {"block_in": torch.float32, "product_in": torch.bfloat16, "block_out": torch.float32}
    assert not any(m._forward_hooks for m in lora_model.modules())  # every hook removed
    assert not any(type(m).__name__ == "LeanBlock" for m in lora_model.modules())  # blocks restored
    with torch.no_grad():
        assert arch.base_model(lora_model).model(input_ids=ids).last_hidden_state.dtype == torch.float32


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


@pytest.mark.parametrize("rows", [1, 25, 160, 700])
def test_a_packed_bf16_product_is_the_plain_one(rows):
    torch.manual_seed(rows)
    weight, bias = torch.randn(96, 64).bfloat16(), torch.randn(96).bfloat16()
    layer = FrozenLinear(weight, bias, torch.bfloat16)
    if layer.packed is None:
        pytest.skip("no packed bf16 product on this CPU (no native bf16, or no oneDNN)")
    x = torch.randn(2, rows, 64).bfloat16()
    with torch.no_grad():
        got = layer(x)
    want = torch.nn.functional.linear(x.double(), weight.double(), bias.double())
    assert got.dtype == torch.bfloat16 and got.shape == (2, rows, 96)
    # the same sums, rounded to bf16 once: within one bf16 step of the exact product
    assert torch.allclose(got.double(), want, rtol=2 ** -7, atol=1e-2), (got.double() - want).abs().max()


def test_only_bf16_weights_are_packed_and_a_packed_copy_refuses_gradients():
    assert packed_product(torch.zeros(8, 8)) is None  # float32: MKL's own product is kept
    assert packed_product(torch.zeros(8, 8, dtype=torch.float16)) is None
    exact = FrozenLinear(torch.randn(4, 3), None, torch.float32)
    x = torch.randn(5, 3, requires_grad=True)
    exact(x).sum().backward()  # a plain copy takes part in autograd as any product does
    assert torch.allclose(x.grad, exact.weight.sum(0).expand(5, 3))
    low = FrozenLinear(torch.randn(4, 3), None, torch.bfloat16)
    if low.packed is None:
        pytest.skip("no packed bf16 product on this CPU")
    assert low.weight is None  # the packed copy is the only one kept
    with pytest.raises(PiilabError, match="no gradient"):
        low(torch.randn(5, 3, dtype=torch.bfloat16, requires_grad=True))


@pytest.mark.parametrize("model_type", ["llama", "gpt2", "qwen3", "phi"])
def test_bfloat16_blocks_run_on_each_architecture_and_stay_near_the_model(model_type, tokenizer):
    """Norms of other kinds (LayerNorm, Qwen3's query and key norms), parallel blocks (Phi) and
    position embeddings without a rotary module (GPT-2) all reach bf16 products and attention."""
    from tiny import tiny_of_type

    model = tiny_of_type(model_type, tokenizer).eval()
    ids = torch.tensor([tokenizer("Jane Doe wrote to jane.doe@example.com")["input_ids"]])
    want = logits(model, ids)
    with linears_swapped(model, "bfloat16"):
        got = logits(model, ids)
    assert got.dtype == torch.float32 and torch.allclose(got, want, atol=5e-2), (got - want).abs().max()
    assert torch.equal(logits(model, ids), want)  # whole again


def test_bfloat16_without_native_bf16_keeps_the_plain_copies(lora_model, tokenizer, monkeypatch):
    """On a CPU without avx512_bf16/amx_bf16 nothing is packed; the same swap computes with plain
    bf16 products (emulated, slow) and stays near the model."""
    from piilab.layers import linears

    monkeypatch.setattr(linears, "cpu_supports_bf16", lambda: False)
    ids = torch.tensor([tokenizer("Jane Doe wrote to jane.doe@example.com")["input_ids"]])
    want = logits(lora_model, ids)
    with linears_swapped(lora_model, "bfloat16"):
        swapped = [m for m in arch.decoder_layers(lora_model).modules() if isinstance(m, FrozenLinear)]
        assert swapped and all(m.packed is None and m.weight.dtype == torch.bfloat16 for m in swapped)
        got = logits(lora_model, ids)
    assert torch.allclose(got, want, atol=5e-2), (got - want).abs().max()


@pytest.mark.parametrize("precision", ["merged", "bfloat16"])
def test_a_copy_refused_midway_leaves_the_model_as_it_was(lora_model, tokenizer, precision):
    ids = torch.tensor([tokenizer("Jane Doe wrote to jane.doe@example.com")["input_ids"]])
    want = logits(lora_model, ids)
    last = arch.decoder_layers(lora_model)[-1]
    last.mlp.down_proj.use_dora["default"] = True  # the last block's last layer cannot be merged
    with pytest.raises(PiilabError, match="DoRA"):
        with linears_swapped(lora_model, precision):
            pass
    blocks = arch.decoder_layers(lora_model)
    assert not any(type(m).__name__ in ("FrozenLinear", "LeanBlock") for m in lora_model.modules())
    assert blocks[-1] is last and not hasattr(lora_model, "_piilab_linears")
    last.mlp.down_proj.use_dora["default"] = False
    assert torch.equal(logits(lora_model, ids), want)  # the earlier blocks' layers are back too
