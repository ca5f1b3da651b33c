"""The tuned lens on tiny models: identity at the start, lower KL after training, and decoding."""

from __future__ import annotations

import gc
import json
import re
from pathlib import Path

import pytest
import torch
from tiny import save_model_dir, tiny_llama

from piilab.cli import main
from piilab.errors import PiilabError
from piilab.layers import lens_training as lt
from piilab.layers import tuned_lens as tl
from piilab.layers.decode import Decoding, generate
from piilab.layers.lenses import make_lens
from piilab.models import arch, load_model

pytestmark = pytest.mark.usefixtures("one_thread")

LAYERS = [1, 2, 3]
# A wider weight init than the default 0.02, so layers differ enough for the KL to matter.
SPREAD = dict(initializer_range=0.3)
RECORDS = [
    {"id": f"r{i}", "source": "synthetic", "text": text, "spans": None,
     "prompt": f"Find the personal information in the text below.\n\n{text}",
     "completion": answer}
    for i, (text, answer) in enumerate([
        ("Jane Doe wrote to jane.doe@example.com about order 55-123.",
         "Jane Doe (NAME)\njane.doe@example.com (EMAIL)"),
        ("Call +1 555 010 2000 or visit https://example.org/~jdoe today.",
         "+1 555 010 2000 (PHONE_NUM)\nhttps://example.org/~jdoe (URL_PERSONAL)"),
        ("The student Ana Silva lives at 12 Oak Street, Springfield.",
         "Ana Silva (NAME)\n12 Oak Street, Springfield (STREET_ADDRESS)"),
        ("My username is cool_cat_42 and my ID is A1234567.",
         "cool_cat_42 (USERNAME)\nA1234567 (ID_NUM)"),
        ("The capital of France is Paris.", "None"),
        ("The quick brown fox jumps over the lazy dog.", "None"),
    ])
]


@pytest.fixture(scope="module")
def model(tokenizer):
    built = tiny_llama(tokenizer, **SPREAD)
    assert arch.num_layers(built) == 4 and built.config.hidden_size == 32  # tiny took effect
    return built


def random_states(model, tokenizer, n: int, seed: int) -> lt.States:
    """Hidden states of n random token sequences (every position counts)."""
    g = torch.Generator().manual_seed(seed)
    examples = [lt.Example(torch.randint(4, len(tokenizer), (24,), generator=g).tolist(), 0)
                for _ in range(n)]
    return lt.collect_states(model, examples, LAYERS, pad_id=tokenizer.pad_token_id,
                             progress=False)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("data")
    (folder / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in RECORDS[:4]))
    (folder / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in RECORDS[4:]))
    return folder


@pytest.fixture(scope="module")
def spread_model_dir(tmp_path_factory, tokenizer) -> Path:
    return save_model_dir(tiny_llama(tokenizer, **SPREAD), tokenizer,
                          tmp_path_factory.mktemp("tiny-llama-spread"))


@pytest.fixture(scope="module")
def lens_dir(spread_model_dir, data_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("lens") / "lens"
    assert main(["lens", "train", "--model", str(spread_model_dir), "--data", str(data_dir),
                 "--out", str(out), "--steps", "30", "--lr", "1e-2", "--batch-tokens", "64",
                 "--positions", "all", "--device", "cpu"]) == 0
    return out


# ---------------------------------------------------------------- the translators


def test_untrained_lens_is_the_logit_lens_exactly(model, tokenizer):
    states = random_states(model, tokenizer, 4, seed=1)
    translators = tl.Translators(32, LAYERS)
    for layer in LAYERS:
        h = states.hidden[layer]
        assert torch.equal(translators(layer, h), h)
        logit_lens = make_lens(model, "norm")(layer, h)
        assert torch.equal(tl.head(model, translators(layer, h)), logit_lens)
    assert lt.layer_kl(model, states, translators) == lt.layer_kl(model, states)


def test_states_are_the_exit_layers_the_engine_reads(model, tokenizer):
    """Layer L's logit lens from the collected states is the model cut to L layers."""
    ids = torch.randint(4, len(tokenizer), (1, 12), generator=torch.Generator().manual_seed(2))
    states = lt.collect_states(model, [lt.Example(ids[0].tolist(), 0)], LAYERS,
                               pad_id=tokenizer.pad_token_id, progress=False)
    with torch.no_grad():
        assert torch.allclose(tl.head(model, states.final), model(ids).logits[0, :-1], atol=1e-5)
        for layer in LAYERS:
            with arch.truncated(model, layer):
                cut = model(ids).logits[0, :-1]  # (T-1, V): positions that predict a token
            assert torch.allclose(tl.head(model, states.hidden[layer]), cut, atol=1e-5)


def test_training_lowers_held_out_kl_at_every_layer(model, tokenizer):
    train = random_states(model, tokenizer, 32, seed=3)
    heldout = random_states(model, tokenizer, 16, seed=4)
    weights = [p.detach().clone() for p in model.parameters()]
    translators = tl.Translators(32, LAYERS)
    history = lt.fit(model, translators, train, steps=40, lr=1e-2, batch_tokens=256, progress=False)
    assert history[-1] < history[0]
    kl = lt.compare_kl(model, heldout, translators)
    for layer in LAYERS:
        assert kl["tuned_lens"][layer] < 0.9 * kl["logit_lens"][layer], layer
    # the model is frozen: its weights are unchanged and still trainable afterwards
    assert all(torch.equal(a, b) for a, b in zip(weights, model.parameters()))
    assert all(p.requires_grad for p in model.parameters())


def test_answer_positions_start_where_the_answer_is_predicted(tokenizer):
    from piilab.models.prompts import PromptFormat

    fmt = PromptFormat(kind="plain")
    example = lt.encode(RECORDS[0], tokenizer, fmt, positions="answer")
    prompt = tokenizer(fmt.render(tokenizer, RECORDS[0]["prompt"]))["input_ids"]
    answer = tokenizer(RECORDS[0]["completion"], add_special_tokens=False)["input_ids"]
    assert example.ids == [*prompt, *answer, tokenizer.eos_token_id]
    assert example.start == len(prompt) - 1  # the last prompt token predicts the first answer token
    assert lt.encode(RECORDS[0], tokenizer, fmt, positions="all").start == 0


def test_layer_choice(model):
    assert lt.choose_layers(model, None) == [1, 2, 3]
    assert lt.choose_layers(model, [4, 2]) == [2]  # the last layer is the model: no translator
    with pytest.raises(PiilabError, match="layers 1..4"):
        lt.choose_layers(model, [5])
    with pytest.raises(PiilabError, match="needs no translator"):
        lt.choose_layers(model, [4])


# ---------------------------------------------------------------- the lens folder


def test_lens_train_writes_weights_and_config(lens_dir, spread_model_dir):
    config = json.loads((lens_dir / tl.CONFIG_FILE).read_text())
    assert config["format"] == tl.FORMAT and config["model"] == str(spread_model_dir)
    assert (config["num_layers"], config["hidden_size"], config["layers"]) == (4, 32, [1, 2, 3])
    assert config["training"]["steps"] == 30 and config["heldout"]["source"] == "test.jsonl"
    assert config["loss"]["last"] < config["loss"]["first"]
    for layer in ("1", "2", "3"):  # held-out records, tuned against the logit lens
        assert config["kl"]["tuned_lens"][layer] < config["kl"]["logit_lens"][layer]
    translators, _ = tl.read_lens(lens_dir)
    assert translators.layers == [1, 2, 3]
    assert any(bool(p.abs().sum() > 0) for p in translators.parameters())  # it trained


def test_tuned_lens_decodes_and_equals_the_model_at_the_last_layer(lens_dir, spread_model_dir,
                                                                   caplog):
    model, tokenizer = load_model(str(spread_model_dir), device="cpu")
    prompts = [RECORDS[4]["prompt"], RECORDS[5]["prompt"]]
    decoding = Decoding(max_new_tokens=8)
    with caplog.at_level("WARNING", logger="piilab.layers.tuned_lens"):
        tuned = generate(model, tokenizer, prompts, [1, 2, 4], lens=f"tuned:{lens_dir}",
                         decoding=decoding, progress=False, return_details=True)
    assert "differs" not in caplog.text  # the model it was trained for
    plain = generate(model, tokenizer, prompts, [1, 2, 4], lens="norm", decoding=decoding,
                     progress=False, return_details=True)
    assert tuned.token_ids[4] == plain.token_ids[4]  # layer N: the model itself
    assert all(len(ids) for layer in (1, 2) for ids in tuned.token_ids[layer])
    # below N the translator is applied: the lens's logits differ from the logit lens
    lens, h = make_lens(model, f"tuned:{lens_dir}"), torch.randn(3, 32)
    assert not torch.allclose(lens(2, h), make_lens(model, "norm")(2, h))
    assert torch.equal(lens(4, h), make_lens(model, "norm")(4, h))


def test_layer_without_translator_is_an_error(spread_model_dir, data_dir, tmp_path, tokenizer):
    out = tmp_path / "lens"
    assert main(["lens", "train", "--model", str(spread_model_dir), "--data", str(data_dir),
                 "--out", str(out), "--layers", "2", "--steps", "2", "--device", "cpu"]) == 0
    model, _ = load_model(str(spread_model_dir), device="cpu")
    lens = make_lens(model, f"tuned:{out}")
    with pytest.raises(PiilabError, match="no translator for layer 1"):
        lens(1, torch.zeros(1, 32))


@pytest.mark.parametrize("verb", ["eval", "extract"])
def test_lens_for_another_model_is_a_one_line_error_before_the_model_loads(
        lens_dir, data_dir, tmp_path, tokenizer, capsys, monkeypatch, verb):
    import piilab.models

    wider = save_model_dir(tiny_llama(tokenizer, hidden_size=48), tokenizer, tmp_path / "wider")
    monkeypatch.setattr(piilab.models, "load_model", lambda *a, **k: pytest.fail("model loaded"))
    args = {"eval": ["eval", "--model", str(wider), "--layers", "2,4", "--data", str(data_dir),
                     "--out", str(tmp_path / "eval"), "--metrics", "pii", "--max-new-tokens", "2"],
            "extract": ["extract", "--model", str(wider), "Jane Doe wrote."]}[verb]
    assert main([*args, "--lens", f"tuned:{lens_dir}", "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    errors = re.findall(r"piilab: error: .*", err)  # one line, wherever a progress bar left off
    assert len(errors) == 1 and "Traceback" not in err
    assert "trained for" in errors[0] and "hidden size 48" in errors[0]


@pytest.mark.parametrize("spec, message", [
    ("tuned", "needs its folder"),
    ("tuned:{missing}", "not a tuned lens folder"),
])
def test_bad_lens_specs(model, tmp_path, spec, message):
    with pytest.raises(PiilabError, match=message):
        make_lens(model, spec.format(missing=tmp_path / "nothing"))


@pytest.mark.parametrize("flag, value, message", [
    ("--steps", "0", "--steps must be at least 1"),
    ("--lr", "inf", "--lr must be a positive finite number"),
    ("--lr", "nan", "--lr must be a positive finite number"),
    ("--weight-decay", "inf", "--weight-decay must be a finite number"),
])
def test_bad_training_settings_are_one_line_errors(data_dir, tmp_path, capsys, flag, value, message):
    assert main(["lens", "train", "--data", str(data_dir), "--out", str(tmp_path / "x"),
                 flag, value]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_eval_decodes_through_the_tuned_lens(lens_dir, spread_model_dir, data_dir, tmp_path):
    out = tmp_path / "eval"
    assert main(["eval", "--model", str(spread_model_dir), "--layers", "2,4", "--data",
                 str(data_dir), "--out", str(out), "--lens", f"tuned:{lens_dir}", "--metrics",
                 "pii", "--max-new-tokens", "4", "--device", "cpu"]) == 0
    runs = json.loads((out / "results.json").read_text())["runs"]
    assert [(run["layer"], run["lens"]) for run in runs] == [(2, f"tuned:{lens_dir}"),
                                                            (4, f"tuned:{lens_dir}")]


def test_same_shaped_other_model_is_a_warning(lens_dir, tokenizer, caplog):
    other = tiny_llama(tokenizer, seed=1)  # fits the lens's shapes, but other weights
    with caplog.at_level("WARNING", logger="piilab.layers.tuned_lens"):
        make_lens(other, f"tuned:{lens_dir}")
    assert "unembedding differs" in caplog.text


def test_a_freed_model_leaves_no_mark_a_later_model_could_inherit(lens_dir, tokenizer, caplog):
    # CPython reuses a freed object's id(), so a mark kept by id let a later model skip its check
    other = tiny_llama(tokenizer, seed=2)
    make_lens(other, f"tuned:{lens_dir}")
    assert any(str(lens_dir) in seen for seen in tl._checked.values())
    del other
    gc.collect()
    assert not any(str(lens_dir) in seen for seen in tl._checked.values())
