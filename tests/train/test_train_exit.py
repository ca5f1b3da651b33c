"""Early-exit training (--exit-layers): the loss against a hand computation, the flags, the effect."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from test_train import NONE, PII, tiny_config, write_dataset
from tiny import lora_batch, save_model_dir, tiny_gpt2, tiny_llama

from piilab.cli import main
from piilab.errors import PiilabError
from piilab.layers.decode import Decoding, generate
from piilab.models import arch, load_model
from piilab.models.prompts import format_for
from piilab.train import IGNORE_INDEX, TrainConfig, train
from piilab.train.run_log import read_log_csv
from piilab.train.trainer import (
    LAYER_LOSS,
    check_exit_layers,
    install_completion_loss,
    scheduled_exit_weight,
    shared_prefix_length,
)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def sharp_model_dir(tmp_path_factory, tokenizer):
    """The tiny Llama (4 layers) with weights large enough for LoRA to memorise within 40 steps."""
    model = tiny_llama(tokenizer, initializer_range=0.3)
    assert model.config.hidden_size == 32 and model.config.num_hidden_layers == 4
    return save_model_dir(model, tokenizer, tmp_path_factory.mktemp("sharp-llama"))


def hand_loss(model, batch, exits, weight):
    """(L_N + w * sum_e L_e) / (1 + w * k) from a plain forward that keeps every hidden state."""
    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], output_hidden_states=True)
    targets = batch["labels"][:, 1:]
    mask = targets != IGNORE_INDEX
    n = mask.sum()
    final = F.cross_entropy(out.logits[:, :-1][mask].float(), targets[mask], reduction="sum")
    per_layer = {}
    for layer in exits:
        h = out.hidden_states[layer][:, :-1][mask]  # the output of block `layer`
        logits = arch.unembed(model, arch.final_norm(model)(h))
        per_layer[layer] = F.cross_entropy(logits.float(), targets[mask], reduction="sum") / n
    objective = (final / n + weight * sum(per_layer.values())) / (1 + weight * len(exits))
    return objective, final / n, per_layer


def grads(model, loss):
    model.zero_grad(set_to_none=True)
    loss.backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


# ---------------------------------------------------------------- the loss


@pytest.mark.parametrize("share_prefix", [True, False])
@pytest.mark.parametrize("checkpointing", [False, True])
def test_exit_loss_equals_a_hand_computation_from_all_hidden_states(tokenizer, share_prefix, checkpointing):
    model, batch = lora_batch(tokenizer)
    assert arch.num_layers(model) == 4
    assert shared_prefix_length(batch["input_ids"], batch["attention_mask"]) >= 8
    if checkpointing:
        model.activation_checkpointing_enable()
        assert arch.base_model(model).is_activation_checkpointing
    exits, weight = [3, 1], 0.7
    want, want_final, want_layers = hand_loss(model, batch, sorted(exits), weight)
    g_want = grads(model, want)

    # transformers keeps hooks of its own once output_hidden_states was asked for.
    hooks = [dict(block._forward_hooks) for block in arch.decoder_layers(model)]
    install_completion_loss(model, share_prefix=share_prefix, compact_activations=False, exit_layers=exits)
    out = model(**batch, piilab_loss=True, exit_weight=weight)
    n = out.num_tokens
    assert n.item() == (batch["labels"][:, 1:] != IGNORE_INDEX).sum().item()
    assert torch.allclose(out.loss, want, atol=1e-5)
    # Per-layer sums, exits ascending then the last layer, for the run log.
    got = (out.layer_loss_sums / n).tolist()
    assert got == pytest.approx([want_layers[1].item(), want_layers[3].item(), want_final.item()], abs=1e-5)
    g_got = grads(model, out.loss)
    assert g_got.keys() == g_want.keys() and len(g_got) > 0
    assert all(torch.allclose(g_got[k], g_want[k], atol=1e-5) for k in g_want)
    # The exit terms reach the weights below the exit layer: layer 1's LoRA gradients differ
    # from those of the last layer's loss alone.
    alone = grads(model, hand_loss(model, batch, [], 0.0)[0])
    first = [k for k in g_want if ".layers.0." in k]
    assert first and any(not torch.allclose(alone[k], g_got[k], atol=1e-4) for k in first)
    # No hook of ours outlives the call.
    assert [dict(block._forward_hooks) for block in arch.decoder_layers(model)] == hooks


def test_exit_loss_on_gpt2_and_with_compact_activations(tokenizer, monkeypatch):
    from piilab.train.trainer import CompactSavedActivations

    monkeypatch.setattr(CompactSavedActivations, "MIN_ELEMENTS", 0)  # the tiny model's are all small
    model, batch = lora_batch(tokenizer, tiny_gpt2, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    assert arch.num_layers(model) == 4
    want = hand_loss(model, batch, [2], 1.0)[0]
    install_completion_loss(model, share_prefix=True, compact_activations=True, exit_layers=[2])
    out = model(**batch, piilab_loss=True, exit_weight=1.0)
    assert torch.allclose(out.loss, want, atol=1e-5)  # compacting changes the backward only


def test_without_exit_layers_the_loss_is_the_last_layers_alone_and_no_hook_runs(tokenizer, monkeypatch):
    model, batch = lora_batch(tokenizer)
    assert arch.num_layers(model) == 4
    install_completion_loss(model, compact_activations=False)
    plain = model(**batch, piilab_loss=True)
    assert plain.layer_loss_sums is None
    assert torch.allclose(plain.loss, hand_loss(model, batch, [], 0.0)[0], atol=1e-6)

    # Turning exits on and off again leaves the loss bit for bit as it was, without hooks.
    install_completion_loss(model, compact_activations=False, exit_layers=[2])
    assert model(**batch, piilab_loss=True, exit_weight=1.0).loss.item() != plain.loss.item()
    install_completion_loss(model, compact_activations=False, exit_layers=[])
    monkeypatch.setattr("piilab.train.trainer.block_outputs", lambda *a: pytest.fail("hooked without exit layers"))
    assert torch.equal(model(**batch, piilab_loss=True).loss, plain.loss)
    # Weight 0 (the linear schedule's first step) is the last layer's loss too.
    install_completion_loss(model, compact_activations=False, exit_layers=[1, 2])
    monkeypatch.undo()
    assert torch.allclose(model(**batch, piilab_loss=True, exit_weight=0.0).loss, plain.loss, atol=1e-7)


def test_schedule_constant_and_linear():
    assert [scheduled_exit_weight("constant", 0.5, s, 5) for s in range(5)] == [0.5] * 5
    assert [scheduled_exit_weight("linear", 2.0, s, 5) for s in range(5)] == [0.0, 0.5, 1.0, 1.5, 2.0]
    assert scheduled_exit_weight("linear", 2.0, 0, 1) == 2.0  # a one-step run gets the full weight
    with pytest.raises(PiilabError, match="--exit-loss-schedule"):
        scheduled_exit_weight("cosine", 1.0, 0, 5)


# ---------------------------------------------------------------- bad values


@pytest.mark.parametrize("overrides, message", [
    ({"exit_layers": "16,x"}, "--exit-layers takes layer numbers"),
    ({"exit_layers": "2.5"}, "--exit-layers takes layer numbers"),
    ({"exit_layers": [2.0]}, "--exit-layers takes layer numbers"),
    ({"exit_layers": "0,2"}, "--exit-layers are 1-based"),
    ({"exit_layers": -3}, "--exit-layers are 1-based"),
    ({"exit_loss_weight": 0}, "--exit-loss-weight must be a positive finite number"),
    ({"exit_loss_weight": -1.0}, "--exit-loss-weight must be a positive finite number"),
    ({"exit_loss_schedule": "cosine"}, "--exit-loss-schedule must be one of constant, linear"),
])
def test_config_rejects_bad_exit_settings(overrides, message):
    with pytest.raises(PiilabError, match=message) as err:
        TrainConfig(data="d", out="o", **overrides)
    assert "\n" not in str(err.value)


def test_config_normalises_exit_layers():
    assert TrainConfig(data="d", out="o", exit_layers="24, 16,16").exit_layers == [16, 24]
    assert TrainConfig(data="d", out="o", exit_layers=[24, 16]).exit_layers == [16, 24]
    assert TrainConfig(data="d", out="o", exit_layers=8).exit_layers == [8]
    assert TrainConfig(data="d", out="o", exit_layers="").exit_layers == []
    assert TrainConfig(data="d", out="o").exit_layers == []


def test_exit_layers_must_lie_below_the_last_layer(tokenizer):
    assert check_exit_layers([3, 1, 3], 4) == [1, 3]
    with pytest.raises(PiilabError, match=r"--exit-layers 4 is out of range: .* 4 decoder layers, .* 1\.\.3"):
        check_exit_layers([2, 4], 4)
    with pytest.raises(PiilabError, match="--exit-layers 9"):
        install_completion_loss(tiny_llama(tokenizer), exit_layers=[9])


def test_cli_out_of_range_exit_layer_is_one_error_line(tmp_path, sharp_model_dir, data_dir, capsys):
    args = ["train", "--model", str(sharp_model_dir), "--data", str(data_dir), "--out", str(tmp_path / "r")]
    assert main([*args, "--exit-layers", "2,4"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("piilab: error: --exit-layers 4 is out of range")
    assert not (tmp_path / "r" / "train_config.json").exists()
    assert main([*args, "--exit-layers", "two"]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("piilab: error: --exit-layers")


# ---------------------------------------------------------------- flags, config and log


def test_cli_flags_reach_train_config_and_the_log_and_the_schedule_applies(tmp_path, sharp_model_dir, data_dir):
    run = tmp_path / "run"
    assert main(["train", "--model", str(sharp_model_dir), "--data", str(data_dir), "--out", str(run),
                 "--max-steps", "3", "--batch-size", "4", "--lora-r", "4", "--lr", "1e-2", "--save-steps", "2",
                 "--eval-steps", "3", "--exit-layers", "2,1", "--exit-loss-weight", "0.5",
                 "--exit-loss-schedule", "linear"]) == 0
    saved = json.loads((run / "train_config.json").read_text())["config"]
    assert (saved["exit_layers"], saved["exit_loss_weight"], saved["exit_loss_schedule"]) == ([1, 2], 0.5, "linear")

    rows = read_log_csv(run / "train_log.csv")
    header = (run / "train_log.csv").read_text().splitlines()[0].split(",")
    columns = [f"{LAYER_LOSS}{layer}" for layer in (1, 2, 4)]
    assert header[-6:] == [*columns, *(f"eval_{c}" for c in columns)]
    weights = [0.0, 0.25, 0.5]  # linear: 0 at the first step, W at the last
    for row, w in zip(rows, weights, strict=True):
        l1, l2, last = (row[c] for c in columns)
        assert row["loss"] == pytest.approx((last + w * (l1 + l2)) / (1 + 2 * w), rel=1e-4)
    # The eval loss is the last layer's alone (comparable with a run without exits).
    assert rows[-1]["eval_loss"] == pytest.approx(rows[-1][f"eval_{LAYER_LOSS}4"], rel=1e-4)
    assert rows[-1]["eval_loss"] != pytest.approx(rows[-1][f"eval_{LAYER_LOSS}1"], rel=1e-3)

    # The exit settings are part of the plan: --resume refuses a change.
    assert main(["train", "--out", str(run), "--resume", "--exit-layers", "1"]) == 2
    assert main(["train", "--out", str(run), "--resume", "--exit-layers", "1,2"]) == 0


def test_an_experiment_files_train_section_passes_the_exit_settings(tmp_path):
    from piilab import experiment

    path = tmp_path / "exp.yaml"
    path.write_text("out: x\ndata: {synthetic: 4}\n"
                    "train: {model: m, exit_layers: [24, 16], exit_loss_weight: 0.5, exit_loss_schedule: linear}\n")
    train_config = experiment.stage_configs(experiment.Experiment.from_yaml(path))["train"]
    assert (train_config.exit_layers, train_config.exit_loss_weight, train_config.exit_loss_schedule) == (
        [16, 24], 0.5, "linear")
    path.write_text("out: x\ndata: {synthetic: 4}\ntrain: {model: m, exit_layers: '16,24'}\n")
    assert experiment.stage_configs(experiment.Experiment.from_yaml(path))["train"].exit_layers == [16, 24]


# ---------------------------------------------------------------- the effect


def exit_decodes(run_dir, layer):
    model, tokenizer = load_model(str(run_dir))
    fmt = format_for(tokenizer, str(run_dir))
    prompts = [fmt.render(tokenizer, pair["prompt"]) for pair in (PII, NONE)]
    out = generate(model, tokenizer, prompts, layers=[layer], decoding=Decoding(max_new_tokens=40),
                   add_special_tokens=fmt.add_special_tokens, progress=False)
    return out[layer]


def test_exit_training_teaches_the_exit_layer_the_answers(tmp_path, sharp_model_dir, data_dir):
    plan = dict(max_steps=40, batch_size=8)
    with_exit = train(tiny_config(sharp_model_dir, data_dir, tmp_path / "exit", exit_layers=[2], **plan))
    without = train(tiny_config(sharp_model_dir, data_dir, tmp_path / "plain", **plan))
    assert with_exit.global_step == without.global_step == 40

    rows = read_log_csv(tmp_path / "exit" / "train_log.csv")
    assert rows[-1][f"{LAYER_LOSS}2"] < 0.1 * rows[0][f"{LAYER_LOSS}2"]
    assert rows[-1][f"{LAYER_LOSS}4"] < 0.25 * rows[0][f"{LAYER_LOSS}4"]  # the last layer still learns
    answers = [PII["completion"], NONE["completion"]]
    assert exit_decodes(tmp_path / "exit", 2) == answers
    assert exit_decodes(tmp_path / "exit", 4) == answers
    assert exit_decodes(tmp_path / "plain", 4) == answers
    assert exit_decodes(tmp_path / "plain", 2) != answers


@pytest.mark.slow
def test_two_processes_under_torchrun_train_with_exit_layers(tmp_path, sharp_model_dir, data_dir):
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "piilab", "train", "--model", str(sharp_model_dir), "--data", str(data_dir),
           "--out", str(out), "--max-steps", "3", "--batch-size", "2", "--lora-r", "4", "--device", "cpu",
           "--exit-layers", "1,2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads((out / "train_metrics.json").read_text())["world_size"] == 2
    rows = read_log_csv(out / "train_log.csv")
    assert [r["step"] for r in rows] == [1, 2, 3]
    for row in rows:  # constant weight 1: the mean of the three layers' losses
        layers = [row[f"{LAYER_LOSS}{layer}"] for layer in (1, 2, 4)]
        assert row["loss"] == pytest.approx(sum(layers) / 3, rel=1e-4)
