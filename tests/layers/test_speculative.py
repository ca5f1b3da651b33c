"""Self-speculative decoding: drafts from an exit layer, yet exactly the full model's greedy
output."""

import copy
import json
import logging

import pytest
import torch
from helpers import one_line_error, read_jsonl
from test_decode import EARLY_EOS, PROMPTS, SPREAD, hf_new_tokens
from tiny import tiny_gpt2, tiny_llama, tiny_of_type

from piilab.cli import main
from piilab.errors import PiilabError
from piilab.layers.decode import Decoding, generate
from piilab.layers.speculative import Speculation, speculative_generate
from piilab.models import arch

pytestmark = pytest.mark.usefixtures("one_thread")

BUILDERS = {"llama": tiny_llama, "gpt2": tiny_gpt2}
N = 4


def spread_model(name, tokenizer):
    built = BUILDERS[name](tokenizer, **SPREAD)
    with torch.no_grad():  # norms that are not all ones, so the final norm changes the argmax
        for param_name, param in built.named_parameters():
            if "norm" in param_name or "ln_" in param_name:
                param.uniform_(0.5, 1.5)
    assert arch.num_layers(built) == N and built.config.hidden_size == 32  # tiny took effect
    return built


@pytest.fixture(scope="module", params=sorted(BUILDERS))
def model(request, tokenizer):
    return spread_model(request.param, tokenizer)


def full_depth(model, tokenizer, prompts, decoding):
    """The reference: the layer engine's greedy decoding at the last layer."""
    out = generate(model, tokenizer, prompts, [N], decoding=decoding, return_details=True,
                   progress=False)
    return out.token_ids[N], out.texts[N]


def speculate(model, tokenizer, prompts, draft_layer, **kwargs) -> Speculation:
    return speculative_generate(model, tokenizer, prompts, draft_layer, progress=False, **kwargs)


def check_counts(out: Speculation, exact: bool = True):
    """Accepted drafts never exceed drafted ones; each full pass commits one token of its own."""
    assert 0 <= out.accepted <= out.drafted
    if exact:  # nothing was cut off after an EOS or a stop string inside a round
        assert out.new_tokens == out.accepted + out.rounds
    else:
        assert out.new_tokens <= out.accepted + out.rounds
    assert out.acceptance_rate == (out.accepted / out.drafted if out.drafted else 0.0)


# ---------------------------------------------------------------- exactness


@pytest.mark.parametrize("draft_layer", [1, 2, 3])
@pytest.mark.parametrize("draft_tokens", [1, 3, 8])
@pytest.mark.parametrize("precision", ["exact", "bfloat16"])
def test_equals_full_depth_greedy_decoding(model, tokenizer, draft_layer, draft_tokens, precision):
    decoding = Decoding(max_new_tokens=12)
    expected_ids, expected_texts = full_depth(model, tokenizer, PROMPTS, decoding)
    out = speculate(model, tokenizer, PROMPTS, draft_layer, draft_tokens=draft_tokens,
                    draft_precision=precision, decoding=decoding)
    assert out.draft_precision == precision
    assert out.token_ids == expected_ids
    assert out.texts == expected_texts
    assert len({tuple(ids) for ids in out.token_ids}) == len(PROMPTS)  # varied, not degenerate
    check_counts(out)
    # a random draft disagrees sometimes: the verification did real work
    assert out.drafted > out.accepted
    assert len(out.seconds) == len(PROMPTS) and all(s > 0 for s in out.seconds)
    assert arch.num_layers(model) == N and model.config.num_hidden_layers == N  # left whole


def test_equals_hf_generate_on_the_full_model(model, tokenizer):
    out = speculate(model, tokenizer, PROMPTS, 2, draft_tokens=3,
                    decoding=Decoding(max_new_tokens=12))
    for prompt, ids in zip(PROMPTS, out.token_ids):
        assert ids == hf_new_tokens(model, tokenizer, [prompt], 12)[0]


def test_ends_at_eos_inside_the_budget(model, tokenizer):
    model.generation_config.eos_token_id = [tokenizer.eos_token_id, *EARLY_EOS]
    try:
        decoding = Decoding(max_new_tokens=16)
        expected, _ = full_depth(model, tokenizer, PROMPTS, decoding)
        assert min(map(len, expected)) < 16  # some prompts do end early
        for draft_layer, draft_tokens in [(1, 8), (3, 3), (2, 1)]:
            out = speculate(model, tokenizer, PROMPTS, draft_layer, draft_tokens=draft_tokens,
                            decoding=decoding)
            assert out.token_ids == expected
            check_counts(out, exact=False)
            eos = set(model.generation_config.eos_token_id)
            assert all(ids[-1] in eos or len(ids) == 16 for ids in out.token_ids)
    finally:
        model.generation_config.eos_token_id = tokenizer.eos_token_id


def test_stop_strings_end_a_row_as_plain_decoding_does(model, tokenizer):
    free, texts = full_depth(model, tokenizer, PROMPTS, Decoding(max_new_tokens=12))
    stop = texts[0][len(texts[0]) // 2: len(texts[0]) // 2 + 2]
    assert stop.strip()
    decoding = Decoding(max_new_tokens=12, stop=(stop,))
    expected_ids, expected_texts = full_depth(model, tokenizer, PROMPTS, decoding)
    assert len(expected_ids[0]) < len(free[0])
    for draft_tokens in (1, 8):
        out = speculate(model, tokenizer, PROMPTS, 3, draft_tokens=draft_tokens, decoding=decoding)
        assert out.token_ids == expected_ids and out.texts == expected_texts
        assert stop not in out.texts[0]
        check_counts(out, exact=False)


@pytest.mark.parametrize("max_new_tokens", [1, 2, 5])
def test_never_passes_max_new_tokens_smaller_than_the_draft(model, tokenizer, max_new_tokens):
    decoding = Decoding(max_new_tokens=max_new_tokens)
    expected, _ = full_depth(model, tokenizer, PROMPTS, decoding)
    out = speculate(model, tokenizer, PROMPTS, 3, draft_tokens=8, decoding=decoding)
    assert out.token_ids == expected
    assert all(len(ids) == max_new_tokens for ids in out.token_ids)
    check_counts(out)


def test_eos_weight_applies_to_draft_and_verification(model, tokenizer):
    decoding = Decoding(max_new_tokens=12, eos_weight=1e9)
    out = speculate(model, tokenizer, PROMPTS, 2, decoding=decoding)
    assert out.token_ids == [[tokenizer.eos_token_id]] * len(PROMPTS)
    assert out.texts == [""] * len(PROMPTS)
    decoding = Decoding(max_new_tokens=12, eos_weight=3.0)
    assert speculate(model, tokenizer, PROMPTS, 2, decoding=decoding).token_ids == \
        full_depth(model, tokenizer, PROMPTS, decoding)[0]


def test_the_draft_lens_changes_acceptance_only(model, tokenizer):
    decoding = Decoding(max_new_tokens=12)
    expected, _ = full_depth(model, tokenizer, PROMPTS, decoding)
    raw = speculate(model, tokenizer, PROMPTS, 2, lens="raw", decoding=decoding)
    norm = speculate(model, tokenizer, PROMPTS, 2, lens="norm", decoding=decoding)
    assert raw.token_ids == norm.token_ids == expected
    assert raw.lens == "raw" and (raw.accepted, raw.drafted) != (norm.accepted, norm.drafted)


@pytest.mark.parametrize("model_type", ["mistral", "qwen2", "qwen3", "gemma", "gemma3_text", "phi",
                                        "phi3", "gpt_neox"])
def test_every_other_supported_architecture_decodes_exactly(tokenizer, model_type):
    """gemma3_text has sliding-window layers (window 4): caches are cut back past the window."""
    model = tiny_of_type(model_type, tokenizer, **SPREAD)
    assert arch.num_layers(model) == 3
    decoding = Decoding(max_new_tokens=10)
    expected = generate(model, tokenizer, PROMPTS, [3], decoding=decoding, return_details=True,
                        progress=False).token_ids[3]
    for draft_layer in (1, 2):
        out = speculate(model, tokenizer, PROMPTS, draft_layer, draft_tokens=3, decoding=decoding)
        assert out.token_ids == expected


# ---------------------------------------------------------------- the draft's head


def count_head_calls(model):
    """A list that grows by one row count each time the model's own output head runs."""
    calls = []
    arch.unembedding(model).register_forward_hook(lambda mod, args, out: calls.append(out.shape[0]))
    return calls


@pytest.mark.parametrize("precision,own_head_drafts", [("exact", True), ("bfloat16", False)])
def test_a_bfloat16_draft_head_drafts_without_the_models_head(model, tokenizer, precision,
                                                               own_head_drafts):
    clone = copy.deepcopy(model)
    head = arch.unembedding(clone)
    calls = count_head_calls(clone)
    decoding = Decoding(max_new_tokens=12)
    out = speculate(clone, tokenizer, PROMPTS, 2, draft_tokens=3, draft_precision=precision,
                    decoding=decoding)
    assert out.token_ids == full_depth(model, tokenizer, PROMPTS, decoding)[0]
    # the model's head runs once per full pass (prefills and verifications), plus once per
    # drafted token only when the draft uses it
    calls_per_pass = len(calls) - out.drafted if own_head_drafts else len(calls)
    assert out.drafted > 0 and calls_per_pass == out.rounds
    assert arch.unembedding(clone) is head and head.weight.dtype == torch.float32  # put back


def test_auto_precision_follows_the_hardware_and_the_head(model, monkeypatch):
    from piilab.layers import speculative

    monkeypatch.setattr("piilab.runtime.native_bf16", lambda device_type: True)
    assert speculative.draft_head_precision(model) == "bfloat16"
    assert speculative.draft_head_precision(copy.deepcopy(model).to(torch.bfloat16)) == "exact"
    monkeypatch.setattr("piilab.runtime.native_bf16", lambda device_type: False)
    assert speculative.draft_head_precision(model) == "exact"
    assert speculative.draft_head_precision(model, "bfloat16") == "bfloat16"  # asked for: given
    with pytest.raises(PiilabError, match="unknown draft precision 'fp8'"):
        speculative.draft_head_precision(model, "fp8")


def test_a_wrapped_head_has_no_bfloat16_copy(model, tokenizer):
    from peft import LoraConfig, get_peft_model

    peft_model = get_peft_model(copy.deepcopy(model), LoraConfig(r=2, target_modules=["lm_head"]))
    with pytest.raises(PiilabError, match="not a plain linear layer.*use draft precision exact"):
        speculate(peft_model, tokenizer, PROMPTS[:1], 2, draft_precision="bfloat16")
    out = speculate(peft_model, tokenizer, PROMPTS[:1], 2, decoding=Decoding(max_new_tokens=4))
    assert out.draft_precision == "exact"


# ---------------------------------------------------------------- acceptance and cache sharing


def silence_blocks_above(model, draft_layer):
    """A copy whose blocks above `draft_layer` add nothing to the residual stream (output
    projections zeroed), so the draft is the full model."""
    clone = copy.deepcopy(model)
    with torch.no_grad():
        for block in arch.decoder_layers(clone)[draft_layer:]:
            for name, param in block.named_parameters():
                if any(part in name for part in ("o_proj", "down_proj", "c_proj")):
                    param.zero_()
    return clone


@pytest.mark.parametrize("draft_layer", [1, 3])
def test_every_draft_is_accepted_when_the_draft_is_the_model(model, tokenizer, draft_layer):
    agreeing = silence_blocks_above(model, draft_layer)
    decoding = Decoding(max_new_tokens=13)
    # the model's own head drafts: a bfloat16 copy could break near-ties differently
    out = speculate(agreeing, tokenizer, PROMPTS, draft_layer, draft_tokens=4,
                    draft_precision="exact", decoding=decoding)
    assert out.token_ids == full_depth(agreeing, tokenizer, PROMPTS, decoding)[0]
    assert out.drafted > 0 and out.accepted == out.drafted and out.acceptance_rate == 1.0
    check_counts(out)
    # 13 tokens: the prefill's, then two rounds of 4 drafts + a bonus token, then 2 drafts + 1
    assert out.rounds == 4 * len(PROMPTS) and out.tokens_per_round == 13 / 4


def test_blocks_up_to_the_draft_layer_never_run_twice(model, tokenizer, monkeypatch):
    """The verification reuses the draft's keys and values: blocks 1..E see each position once."""
    positions, calls = dict.fromkeys(range(1, N + 1), 0), dict.fromkeys(range(1, N + 1), 0)
    for i, block in enumerate(arch.decoder_layers(model), 1):
        forward = block.forward

        def counted(hidden, *args, _i=i, _forward=forward, **kwargs):
            positions[_i] += hidden.shape[1]
            calls[_i] += 1
            return _forward(hidden, *args, **kwargs)

        monkeypatch.setattr(block, "forward", counted)
    decoding = Decoding(max_new_tokens=12)
    out = speculate(model, tokenizer, PROMPTS[:1], 2, draft_tokens=3, decoding=decoding)
    monkeypatch.undo()
    assert out.token_ids == full_depth(model, tokenizer, PROMPTS[:1], decoding)[0]
    length = len(tokenizer(PROMPTS[0])["input_ids"])
    # blocks 1..2: the prompt, then one position per draft pass, never a verification
    assert calls[1] == calls[2] == positions[1] - length + 1 and positions[1] == positions[2]
    # blocks 3..4: the prompt, then one verification per round over exactly the drafted positions
    assert calls[3] == calls[4] == out.rounds and positions[3] == positions[4] == positions[1]
    assert positions[3] - length > out.rounds - 1  # several positions per verification


def test_works_with_a_peft_adapter_applied(tokenizer):
    from peft import LoraConfig, get_peft_model

    base = spread_model("llama", tokenizer)
    tuned = get_peft_model(copy.deepcopy(base), LoraConfig(
        r=4, lora_alpha=16, target_modules=["q_proj", "v_proj", "down_proj"],
        init_lora_weights=False))
    tuned.eval()
    decoding = Decoding(max_new_tokens=10)
    out = speculate(tuned, tokenizer, PROMPTS, 2, draft_tokens=3, decoding=decoding)
    assert out.token_ids == full_depth(tuned, tokenizer, PROMPTS, decoding)[0]
    # the adapter took effect
    assert out.token_ids != full_depth(base, tokenizer, PROMPTS, decoding)[0]
    assert arch.num_layers(tuned) == N


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize("draft_layer", [0, N, N + 1, -1])
def test_draft_layer_out_of_range_is_refused(model, tokenizer, draft_layer):
    with pytest.raises(PiilabError, match=f"layer in 1..{N - 1}"):
        speculate(model, tokenizer, PROMPTS, draft_layer)


def test_sampling_and_bad_draft_tokens_are_refused(model, tokenizer):
    with pytest.raises(PiilabError, match="greedy only"):
        speculate(model, tokenizer, PROMPTS, 2, decoding=Decoding(sample=True))
    with pytest.raises(PiilabError, match="greedy only"):
        speculate(model, tokenizer, PROMPTS, 2, decoding=Decoding.original())
    with pytest.raises(PiilabError, match="draft tokens must be at least 1"):
        speculate(model, tokenizer, PROMPTS, 2, draft_tokens=0)
    with pytest.raises(PiilabError, match="prompt 1 is empty"):
        speculate(model, tokenizer, ["fine", ""], 2)


# ---------------------------------------------------------------- the command line


@pytest.fixture
def prompts_file(tmp_path):
    path = tmp_path / "prompts.jsonl"
    rows = [{"id": "a", "prompt": PROMPTS[0]}, {"prompt": PROMPTS[1]},
            {"id": 7, "prompt": PROMPTS[2]}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_cli_speculative_writes_full_depth_rows_and_a_summary(tiny_llama_dir, prompts_file,
                                                               tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="piilab")
    out, plain = tmp_path / "spec.jsonl", tmp_path / "plain.jsonl"
    common = ["generate", "--model", str(tiny_llama_dir), "--input", str(prompts_file),
              "--max-new-tokens", "8", "--device", "cpu"]
    assert main(common + ["--speculative", "2", "--draft-tokens", "3", "--output", str(out)]) == 0
    summary = [r.getMessage() for r in caplog.records if "acceptance" in r.getMessage()]
    assert len(summary) == 1 and "tokens/s" in summary[0] and "draft layer 2" in summary[0]
    assert main(common + ["--layers", "4", "--output", str(plain)]) == 0
    rows = read_jsonl(out)
    assert [(r["id"], r["layer"]) for r in rows] == [("a", 4), (1, 4), (7, 4)]
    assert rows == read_jsonl(plain)  # the same outputs as plain full-depth decoding
    assert main(common + ["--speculative", "1", "--layers", "4", "--output", str(tmp_path / "1.jsonl")]) == 0
    assert read_jsonl(tmp_path / "1.jsonl") == rows
    # the same rows, so the same settings: a rerun into the first file finds every row there
    assert main(common + ["--speculative", "1", "--output", str(plain)]) == 0
    assert read_jsonl(plain) == rows


@pytest.mark.parametrize("extra,match", [
    (["--speculative", "2", "--layers", "2,4"], "--speculative decodes at full depth (layer 4)"),
    (["--speculative", "2", "--layers", "2"], "drop --layers"),
    (["--speculative", "4"], "layer in 1..3"),
    (["--speculative", "2", "--draft-tokens", "0"], "draft tokens must be at least 1"),
    (["--draft-tokens", "3"], "--draft-tokens needs --speculative"),
    (["--draft-precision", "exact"], "--draft-precision needs --speculative"),
    (["--speculative", "2", "--batch-size", "4"], "one prompt at a time"),
    (["--speculative", "2", "--sample"], "greedy only"),
])
def test_cli_speculative_errors_are_one_line(tiny_llama_dir, capsys, extra, match):
    one_line_error(capsys, ["generate", "--model", str(tiny_llama_dir), "--prompt", "Jane",
                            "--device", "cpu", *extra], match)
