"""The layer engine on the embedded SmolLM2-135M: exit layers decode exactly like truncated models."""

import pytest
import torch

from piilab.layers.decode import Decoding, generate
from piilab.models import arch, load_model
from piilab.models.prompts import format_for

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("one_thread")]


QUESTIONS = ["What is the capital of France?", "My name is Jane Doe. What is my name?"]


def test_exit_layers_equal_hf_generate_on_smollm2_cut_to_those_layers():
    model, tokenizer = load_model("smollm2-135m", device="cpu", dtype="float32")
    assert arch.num_layers(model) == 30
    # chat-templated prompts share their start (the template's system turn): the shared pass runs
    prompts = [format_for(tokenizer).render(tokenizer, q) for q in QUESTIONS]
    out = generate(model, tokenizer, prompts, [8, 30], decoding=Decoding(max_new_tokens=8),
                   add_special_tokens=False, progress=False, return_details=True)
    tokenizer.padding_side = "left"
    enc = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    for layer in (8, 30):
        with arch.truncated(model, layer), torch.no_grad():
            ref = model.generate(**enc, max_new_tokens=8, do_sample=False,
                                 pad_token_id=tokenizer.pad_token_id)
        for ids, row in zip(out.token_ids[layer], ref[:, enc.input_ids.shape[1]:].tolist()):
            assert ids == row[: len(ids)]
    assert "Paris" in out.texts[30][0]
    assert out.seconds[30] > out.seconds[8] > 0
