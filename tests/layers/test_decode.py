"""The layer engine against Hugging Face: exit layer L decodes exactly like a model cut to L layers."""

import copy

import pytest
import torch
from tiny import tiny_gpt2, tiny_llama, tiny_of_type

from piilab.errors import PiilabError
from piilab.layers.decode import Decoding, Generation, _Block, generate
from piilab.models import arch

pytestmark = pytest.mark.usefixtures("one_thread")

PROMPTS = [
    "Jane Doe wrote to jane.doe@example.com about",
    "Call +1 555 010 2000 or visit https://example.org/~jdoe today. The student",
    "The",
    "My username is cool_cat_42 and",
]
BUILDERS = {"llama": tiny_llama, "gpt2": tiny_gpt2}
# A wider weight init than the default 0.02, so tiny random models write varied tokens
# instead of one token repeated (a comparison of repeated tokens proves little).
SPREAD = dict(initializer_range=0.3)
# Extra end-of-sequence ids, so that rows end at different steps and leave the batch early.
EARLY_EOS = list(range(100, 140))


@pytest.fixture(scope="module", params=sorted(BUILDERS))
def model(request, tokenizer):
    built = BUILDERS[request.param](tokenizer, **SPREAD)
    with torch.no_grad():  # norms that are not all ones, so the final norm changes the argmax
        for name, param in built.named_parameters():
            if "norm" in name or "ln_" in name:
                param.uniform_(0.5, 1.5)
    assert arch.num_layers(built) == 4 and built.config.hidden_size == 32  # tiny took effect
    return built


def cut_copy(model, n_layers):
    """A real copy of the model keeping its first n decoder layers (final norm and head kept)."""
    clone = copy.deepcopy(model)
    layers = arch.decoder_layers(clone)
    del layers[n_layers:]
    clone.config.num_hidden_layers = n_layers
    return clone


def hf_new_tokens(model, tokenizer, prompts, max_new_tokens, eos=None, **kwargs):
    """Hugging Face `generate` on a left-padded batch: each row's new tokens up to its EOS."""
    tokenizer.padding_side = "left"
    enc = tokenizer(prompts, return_tensors="pt", padding=True)
    eos = eos or [tokenizer.eos_token_id]
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=max_new_tokens, eos_token_id=eos,
                             pad_token_id=tokenizer.pad_token_id, **kwargs)
    rows = []
    for row in out[:, enc.input_ids.shape[1]:].tolist():
        end = next((i + 1 for i, t in enumerate(row) if t in eos), len(row))
        rows.append(row[:end])
    return rows


def details(model, tokenizer, prompts, layers, **kwargs) -> Generation:
    kwargs.setdefault("decoding", Decoding(max_new_tokens=10))
    return generate(model, tokenizer, prompts, layers, return_details=True, progress=False, **kwargs)


# ---------------------------------------------------------------- exactness


def test_last_layer_equals_hf_generate_on_the_full_model(model, tokenizer):
    out = details(model, tokenizer, PROMPTS, [4])
    for prompt, ids in zip(PROMPTS, out.token_ids[4]):
        assert ids == hf_new_tokens(model, tokenizer, [prompt], 10)[0]
    assert len({tuple(ids) for ids in out.token_ids[4]}) == len(PROMPTS)  # varied, not degenerate


@pytest.mark.parametrize("layers", [[1, 2, 3, 4], [2], [1, 3]])
def test_exit_layer_equals_hf_generate_on_a_truncated_copy(model, tokenizer, layers):
    out = details(model, tokenizer, PROMPTS, layers, batch_size=3)
    assert sorted(out.token_ids) == layers
    for layer in layers:
        reference = cut_copy(model, layer)
        assert out.token_ids[layer] == hf_new_tokens(reference, tokenizer, PROMPTS, 10)
        assert out.texts[layer] == [tokenizer.decode(ids, skip_special_tokens=True)
                                    for ids in out.token_ids[layer]]
    # the model itself was left whole
    assert arch.num_layers(model) == 4 and model.config.num_hidden_layers == 4


def test_rows_that_end_early_leave_the_batch_without_changing_the_others(model, tokenizer):
    model.generation_config.eos_token_id = [tokenizer.eos_token_id, *EARLY_EOS]
    try:
        out = details(model, tokenizer, PROMPTS, [1, 2, 3, 4], decoding=Decoding(max_new_tokens=16))
        lengths = {len(ids) for layer in out.token_ids.values() for ids in layer}
        assert min(lengths) < 16 and max(lengths) == 16  # some rows ended early, others did not
        for layer in out.layers:
            expected = hf_new_tokens(cut_copy(model, layer), tokenizer, PROMPTS, 16, eos=list(
                model.generation_config.eos_token_id))
            assert out.token_ids[layer] == expected
            for ids, text in zip(out.token_ids[layer], out.texts[layer]):
                if ids[-1] in EARLY_EOS:  # the EOS token itself is not part of the text
                    assert text == tokenizer.decode(ids[:-1], skip_special_tokens=True)
    finally:
        model.generation_config.eos_token_id = tokenizer.eos_token_id


INSTRUCTION = "Find the personal information in the text below. Answer: list each item.\n\n"


@pytest.mark.parametrize("layers", [[1, 2, 3, 4], [3]])
def test_a_shared_prompt_start_is_computed_once_with_the_same_result(model, tokenizer, layers):
    from piilab.layers.decode import SHARED_PREFIX_MIN, shared_prefix

    prompts = [INSTRUCTION + p for p in ["Jane Doe wrote", "Call +1 555 010 2000 or visit", "The"]]
    prompts.append(INSTRUCTION.rstrip())  # all of it the shared start but its last token
    encoded = [tokenizer(p)["input_ids"] for p in prompts]
    assert shared_prefix(encoded) >= SHARED_PREFIX_MIN  # the shared pass does run
    out = details(model, tokenizer, prompts, layers, batch_size=4)
    for layer in layers:
        assert out.token_ids[layer] == hf_new_tokens(cut_copy(model, layer), tokenizer, prompts, 10)


def test_shared_prefix_keeps_every_prompt_a_token_of_its_own():
    from piilab.layers.decode import shared_prefix

    assert shared_prefix([[1, 2, 3], [1, 2, 3, 4]], least=1) == 2
    assert shared_prefix([[1, 2, 3], [1, 2, 5]], least=1) == 2
    assert shared_prefix([[1, 2, 3], [1, 2, 5]], least=3) == 0
    assert shared_prefix([[1, 2, 3]], least=1) == 0  # one prompt: nothing to share


def original_algorithm(model, tokenizer, prompt, layer, max_new_tokens):
    """The original experiment: a full forward per new token, lm_head(hidden_states[L]), no cache."""
    ids = tokenizer(prompt, return_tensors="pt").input_ids
    new = []
    with torch.no_grad():
        for _ in range(max_new_tokens):
            hidden = model(ids, output_hidden_states=True).hidden_states[layer]  # (1, T, H)
            token = int(arch.unembedding(model)(hidden[:, -1]).argmax(-1))
            new.append(token)
            if token == tokenizer.eos_token_id:
                break
            ids = torch.cat([ids, torch.tensor([[token]])], dim=-1)
    return new


def test_raw_lens_equals_unembedding_hidden_states_without_a_cache(model, tokenizer):
    out = details(model, tokenizer, PROMPTS, [1, 2, 4], lens="raw")
    norm = details(model, tokenizer, PROMPTS, [1, 2, 4], lens="norm")
    for layer in (1, 2, 4):
        for prompt, ids in zip(PROMPTS, out.token_ids[layer]):
            assert ids == original_algorithm(model, tokenizer, prompt, layer, 10)
    # HF's hidden_states[N] already has the final norm, so raw and norm agree only at L = N
    assert out.token_ids[4] == norm.token_ids[4]
    assert out.token_ids[1] != norm.token_ids[1]


# ---------------------------------------------------------------- batching and sampling


@pytest.mark.parametrize("decoding", [Decoding(max_new_tokens=12),
                                      Decoding.original(max_new_tokens=12),
                                      Decoding(max_new_tokens=12, sample=True, seed=3)])
def test_batched_equals_one_by_one(model, tokenizer, decoding):
    batched = details(model, tokenizer, PROMPTS, [1, 3, 4], decoding=decoding, batch_size=4)
    single = details(model, tokenizer, PROMPTS, [1, 3, 4], decoding=decoding, batch_size=1)
    assert batched.token_ids == single.token_ids
    if not decoding.sample:  # samples are seeded by prompt index, so only greedy may move prompts
        for i, prompt in enumerate(PROMPTS):
            alone = details(model, tokenizer, [prompt], [1, 3, 4], decoding=decoding)
            assert all(alone.token_ids[layer][0] == batched.token_ids[layer][i] for layer in (1, 3, 4))


def test_seeded_sampling_repeats_exactly_and_the_seed_matters(model, tokenizer):
    sampling = Decoding(max_new_tokens=12, sample=True, temperature=1.5, seed=7)
    first = details(model, tokenizer, PROMPTS, [2, 4], decoding=sampling)
    again = details(model, tokenizer, PROMPTS, [2, 4], decoding=sampling)
    other = details(model, tokenizer, PROMPTS, [2, 4],
                    decoding=Decoding(max_new_tokens=12, sample=True, temperature=1.5, seed=8))
    greedy = details(model, tokenizer, PROMPTS, [2, 4], decoding=Decoding(max_new_tokens=12))
    assert first.token_ids == again.token_ids
    assert first.token_ids != other.token_ids
    assert first.token_ids != greedy.token_ids


def test_a_sample_is_seeded_by_the_prompts_number_not_its_place_in_the_call(model, tokenizer):
    sampling = Decoding(max_new_tokens=12, sample=True, temperature=1.5, seed=7)
    together = details(model, tokenizer, PROMPTS, [2, 4], decoding=sampling)
    for i, prompt in enumerate(PROMPTS):
        alone = details(model, tokenizer, [prompt], [2, 4], decoding=sampling, seed_numbers=[i])
        assert all(alone.token_ids[layer][0] == together.token_ids[layer][i] for layer in (2, 4))
    first_alone = details(model, tokenizer, PROMPTS[1:2], [4], decoding=sampling)  # number 0
    assert first_alone.token_ids[4][0] != together.token_ids[4][1]


def test_top_k_1_is_greedy_and_top_k_bounds_the_choice(model, tokenizer):
    greedy = details(model, tokenizer, PROMPTS, [2, 4], decoding=Decoding(max_new_tokens=8))
    top1 = details(model, tokenizer, PROMPTS, [2, 4],
                   decoding=Decoding(max_new_tokens=8, sample=True, top_k=1, temperature=5.0))
    assert top1.token_ids == greedy.token_ids


def test_eos_weight_can_end_every_row_at_once(model, tokenizer):
    out = details(model, tokenizer, PROMPTS, [1, 4], decoding=Decoding(max_new_tokens=8, eos_weight=1e9))
    assert all(ids == [tokenizer.eos_token_id] for layer in out.token_ids.values() for ids in layer)
    assert all(text == "" for layer in out.texts.values() for text in layer)


def test_stop_strings_end_a_row_and_are_cut_from_its_text(model, tokenizer):
    free = details(model, tokenizer, PROMPTS, [4], decoding=Decoding(max_new_tokens=12))
    text = free.texts[4][0]
    stop = text[len(text) // 2: len(text) // 2 + 2]
    assert stop.strip()
    out = details(model, tokenizer, PROMPTS, [4], decoding=Decoding(max_new_tokens=12, stop=(stop,)))
    cut = out.texts[4][0]
    assert stop not in cut and text.startswith(cut)
    assert len(out.token_ids[4][0]) < len(free.token_ids[4][0])
    assert stop in tokenizer.decode(out.token_ids[4][0], skip_special_tokens=True)


# ---------------------------------------------------------------- adapters, timing, errors


def test_works_with_a_peft_adapter_applied(tokenizer):
    from peft import LoraConfig, get_peft_model

    base = tiny_llama(tokenizer, **SPREAD)
    plain = details(base, tokenizer, PROMPTS, [2, 4])
    tuned = get_peft_model(copy.deepcopy(base), LoraConfig(
        r=4, lora_alpha=16, target_modules=["q_proj", "v_proj", "down_proj"], init_lora_weights=False))
    tuned.eval()
    out = details(tuned, tokenizer, PROMPTS, [2, 4])
    assert out.token_ids != plain.token_ids  # the adapter took effect
    for layer in (2, 4):
        with arch.truncated(tuned, layer):
            assert out.token_ids[layer] == hf_new_tokens(tuned, tokenizer, PROMPTS, 10)
    assert arch.num_layers(tuned) == 4


def test_returns_texts_by_layer_and_timings_on_request(model, tokenizer):
    texts = generate(model, tokenizer, PROMPTS, [4, 2], decoding=Decoding(max_new_tokens=5),
                     progress=False)
    assert sorted(texts) == [2, 4] and all(len(v) == len(PROMPTS) for v in texts.values())
    out = details(model, tokenizer, PROMPTS, [1, 4], decoding=Decoding(max_new_tokens=5))
    assert out.layers == [1, 4] and out.n_prompts == len(PROMPTS)
    assert all(s > 0 for s in out.seconds.values())
    assert out.seconds[4] > out.seconds[1]  # layer 4's rows ran through four blocks, not one
    assert sum(out.seconds.values()) <= out.wall_seconds
    assert out.new_tokens == {layer: sum(map(len, ids)) for layer, ids in out.token_ids.items()}
    per_sample = out.seconds_per_sample()
    assert per_sample[4] == pytest.approx(out.seconds[4] / len(PROMPTS))


def test_only_exit_states_of_the_last_position_are_kept(model, tokenizer, monkeypatch):
    kept_shapes = []
    forward = _Block.forward

    def spy(self, hidden, *args, **kwargs):
        before = len(self.plan.kept)
        out = forward(self, hidden, *args, **kwargs)
        kept_shapes.extend(tuple(t.shape) for t in self.plan.kept[before:])
        return out

    monkeypatch.setattr(_Block, "forward", spy)
    details(model, tokenizer, PROMPTS, [2, 4], batch_size=4, decoding=Decoding(max_new_tokens=3))
    assert kept_shapes and all(len(shape) == 2 and shape[1] == 32 for shape in kept_shapes)
    assert max(shape[0] for shape in kept_shapes) <= len(PROMPTS)  # per exit layer, never per block


@pytest.mark.parametrize("layers", [[0], [5], [2, -1]])
def test_layers_out_of_range_are_refused(model, tokenizer, layers):
    with pytest.raises(PiilabError, match="layers 1..4"):
        generate(model, tokenizer, PROMPTS, layers, progress=False)


@pytest.mark.parametrize("prompts,message", [
    (["fine", ""], "prompt 1 is empty"),
    (["   "], "prompt 0 is empty"),
    (["The" * 257], "longer than the context window"),  # "The" is one token; the window is 256
    (["The" * 250], "pass the context window"),
    ("one string", "list of strings"),
])
def test_bad_prompts_are_refused(model, tokenizer, prompts, message):
    with pytest.raises(PiilabError, match=message):
        generate(model, tokenizer, prompts, [2], decoding=Decoding(max_new_tokens=10), progress=False)


@pytest.mark.parametrize("kwargs,message", [
    (dict(max_new_tokens=0), "max_new_tokens"),
    (dict(top_k=5), "sample=True"),
    (dict(sample=True, temperature=0), "temperature"),
    (dict(eos_weight=0), "eos_weight"),
    (dict(stop=("",)), "stop"),
])
def test_decoding_settings_are_checked(kwargs, message):
    with pytest.raises(PiilabError, match=message):
        Decoding(**kwargs)


def test_unknown_lens_is_named(model, tokenizer):
    with pytest.raises(PiilabError, match="unknown lens 'nosuch"):
        generate(model, tokenizer, PROMPTS, [2], lens="nosuch:/nowhere", progress=False)


@pytest.mark.parametrize("model_type", ["mistral", "qwen2", "qwen3", "gemma", "gemma3_text", "phi",
                                        "phi3", "gpt_neox"])
def test_every_other_supported_architecture_matches_hf_generate(tokenizer, model_type):
    model = tiny_of_type(model_type, tokenizer, **SPREAD)
    assert arch.num_layers(model) == 3
    out = details(model, tokenizer, PROMPTS, [1, 2, 3], decoding=Decoding(max_new_tokens=8))
    for layer in (1, 2, 3):
        assert out.token_ids[layer] == hf_new_tokens(cut_copy(model, layer), tokenizer, PROMPTS, 8)
