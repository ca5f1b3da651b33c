import pytest
import torch
from tiny import ARCH_CONFIGS
from transformers import AutoConfig, AutoModelForCausalLM, BertConfig, BertModel

from piilab.errors import PiilabError
from piilab.models import arch


def build(model_type: str):
    torch.manual_seed(0)
    config = AutoConfig.for_model(model_type, **ARCH_CONFIGS[model_type])
    return AutoModelForCausalLM.from_config(config).eval()


@pytest.mark.parametrize("model_type", sorted(ARCH_CONFIGS))
def test_lookups_and_logit_lens_match_a_truncated_forward(model_type):
    model = build(model_type)
    assert arch.num_layers(model) == 3  # the tiny config took effect
    ids = torch.randint(0, 64, (2, 7))
    with torch.no_grad():
        hidden = model(ids, output_hidden_states=True).hidden_states  # embeddings + one per layer
        full = model(ids).logits
        for layer in (1, 2):
            with arch.truncated(model, layer):
                assert arch.num_layers(model) == layer
                truncated_logits = model(ids).logits
            lens_logits = arch.logit_lens(model, hidden[layer])
            torch.testing.assert_close(lens_logits, truncated_logits, rtol=1e-4, atol=1e-4)
        # restored: the full model again
        assert arch.num_layers(model) == 3
        torch.testing.assert_close(model(ids).logits, full)
        with arch.truncated(model, 3):
            torch.testing.assert_close(model(ids).logits, full)


def test_raw_lens_skips_the_final_norm():
    model = build("llama")
    hidden = torch.randn(1, 2, 16) * 5
    raw = arch.logit_lens(model, hidden, normalize=False)
    torch.testing.assert_close(raw, model.lm_head(hidden))
    assert not torch.allclose(raw, arch.logit_lens(model, hidden))


def test_unknown_architecture_is_named():
    bert = BertModel(BertConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                                intermediate_size=8, vocab_size=20))
    with pytest.raises(PiilabError, match="unsupported architecture 'bert'"):
        arch.decoder_layers(bert)


@pytest.mark.parametrize("layer", [0, 4, -1])
def test_truncating_out_of_range_is_an_error(layer):
    model = build("llama")
    with pytest.raises(PiilabError, match="layers 1..3"):
        with arch.truncated(model, layer):
            pass
    assert arch.num_layers(model) == 3


def test_peft_wrapped_model_is_unwrapped():
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(build("llama"), LoraConfig(r=2, target_modules=["q_proj"]))
    assert arch.num_layers(model) == 3
    assert arch.final_norm(model) is model.get_base_model().model.norm
