"""Training pieces that need no training run: config checks, encoding, decisions, the run log."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from piilab.errors import PiilabError
from piilab.models.prompts import PromptFormat, default_format
from piilab.train import IGNORE_INDEX, TrainConfig, encode_record, encode_records
from piilab.train.encode import choose_pad_token
from piilab.train.prepare import check_target_modules, choose_precision, qlora_kwargs, speed_settings
from piilab.train.run_log import RunLogCallback, log_rows, read_log_csv, write_log_csv
from piilab.train.trainer import token_cross_entropy

RECORD = {"id": "r1", "source": "t", "prompt": "Jane Doe wrote to jane.doe@example.com today.",
          "completion": "Jane Doe (NAME)\njane.doe@example.com (EMAIL)", "text": "x", "spans": [],
          "meta": {}}


def config(**overrides) -> TrainConfig:
    return TrainConfig(**{"data": "d", "out": "o", **overrides})


# ---------------------------------------------------------------- TrainConfig


@pytest.mark.parametrize("overrides, message", [
    ({"lora_r": 0}, "--lora-r"),
    ({"lora_dropout": 1.0}, "--lora-dropout"),
    ({"epochs": 1, "max_steps": 5}, "not both"),
    ({"max_steps": 0}, "--max-steps"),
    ({"lr": 0}, "--lr"),
    ({"lr": float("inf")}, "--lr must be a positive finite number"),
    ({"lr": float("nan")}, "--lr must be a positive finite number"),
    ({"epochs": float("inf")}, "--epochs must be a positive finite number"),
    ({"exit_loss_weight": float("inf")}, "--exit-loss-weight must be a positive finite number"),
    ({"exit_loss_weight": float("nan")}, "--exit-loss-weight must be a positive finite number"),
    ({"scheduler": "triangle"}, "--scheduler"),
    ({"warmup": 2.5}, "--warmup"),
    ({"batch_size": 0}, "--batch-size"),
    ({"max_length": 8}, "--max-length"),
    ({"bf16": "yes"}, "--bf16"),
    ({"eval_steps": 0}, "--eval-steps"),
    ({"target_modules": " , "}, "--target-modules"),
    ({"prompt_format": "jinja"}, "--prompt-format"),
    ({"device": "tpu"}, "--device"),
])
def test_config_rejects_bad_values(overrides, message):
    with pytest.raises(PiilabError, match=message):
        config(**overrides)


def test_config_round_trips_through_json_and_names_plan_changes():
    original = config(max_steps=70, lr=1e-3, target_modules="q_proj, v_proj")
    again = TrainConfig.from_dict(json.loads(json.dumps(dataclasses.asdict(original))))
    assert again == original
    assert again.target == ["q_proj", "v_proj"] and config().target == "all-linear"
    changed = dataclasses.replace(original, lr=2e-3, device="cpu", resume=True, out="elsewhere")
    assert changed.plan_differences(original) == ["lr"]  # device, resume, out may change
    with pytest.raises(PiilabError, match="unknown training settings: nope"):
        TrainConfig.from_dict({"data": "d", "out": "o", "nope": 1})


def test_batches_are_random_by_default_and_packing_switches_length_grouping_off():
    assert config().group_by_length is False
    assert config(group_by_length=True).group_by_length is True
    assert config(group_by_length=True, packing=True).group_by_length is False


# ---------------------------------------------------------------- encoding


def test_labels_are_ignored_on_every_prompt_token_and_kept_on_the_answer_and_eos(tokenizer):
    fmt = default_format(tokenizer)
    row = encode_record(RECORD, tokenizer, fmt)
    prompt_ids = tokenizer(fmt.render(tokenizer, RECORD["prompt"]), add_special_tokens=False)["input_ids"]
    n = len(prompt_ids)
    # The prompt is tokenized alone, exactly as generation will see it.
    assert row["input_ids"][:n] == prompt_ids
    assert row["labels"][:n] == [IGNORE_INDEX] * n
    answer = row["labels"][n:]
    assert IGNORE_INDEX not in answer
    assert answer == row["input_ids"][n:]
    assert answer[-1] == tokenizer.eos_token_id
    assert tokenizer.decode(answer[:-1]) == RECORD["completion"]
    assert row["input_ids"].count(tokenizer.eos_token_id) == prompt_ids.count(tokenizer.eos_token_id) + 1


def test_plain_format_adds_the_tokenizers_bos_once_and_chat_adds_none(tokenizer):
    # The tiny tokenizer adds no BOS of its own; a Llama-like one would, and the plain format
    # asks for it (add_special_tokens) while the chat template writes its own.
    plain = encode_record(RECORD, tokenizer, PromptFormat(kind="plain"))
    rendered = PromptFormat(kind="plain").render(tokenizer, RECORD["prompt"])
    assert plain["input_ids"][: len(tokenizer(rendered)["input_ids"])] == tokenizer(rendered)["input_ids"]
    chat = encode_record(RECORD, tokenizer, default_format(tokenizer))
    bos = tokenizer.bos_token_id  # <|im_start|> opens each chat turn: two turns, two of them
    assert chat["input_ids"].count(bos) == 2


def test_records_too_long_or_without_answer_are_skipped_and_counted(tokenizer):
    fmt = default_format(tokenizer)
    short = encode_record(RECORD, tokenizer, fmt)
    long_record = {**RECORD, "prompt": RECORD["prompt"] * 20}
    rows, stats = encode_records([RECORD, long_record, {**RECORD, "completion": ""}], tokenizer, fmt,
                                 max_length=len(short["input_ids"]))
    assert rows == [short]
    assert (stats.kept, stats.skipped_long, stats.skipped_empty) == (1, 1, 1)


def test_collated_batch_ignores_padding_and_prompt(tokenizer):
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    fmt = default_format(tokenizer)
    rows = [encode_record(RECORD, tokenizer, fmt),
            encode_record({**RECORD, "prompt": "Hi.", "completion": "None"}, tokenizer, fmt)]
    batch = DataCollatorForLanguageModeling(pad_token_id=tokenizer.pad_token_id)(rows)
    short = len(rows[1]["input_ids"])
    assert (batch["labels"][1, short:] == IGNORE_INDEX).all()
    assert (batch["input_ids"][1, short:] == tokenizer.pad_token_id).all()
    assert batch["labels"][1, short - 1] == tokenizer.eos_token_id  # EOS kept though it ends the row


# ---------------------------------------------------------------- decisions


def test_pad_token_is_never_eos_when_another_special_token_exists(tokenizer):
    assert choose_pad_token(tokenizer) is None  # <pad> already differs from EOS
    smol_like = tokenizer.__class__(tokenizer_object=tokenizer.backend_tokenizer, eos_token="<|im_end|>",
                                    pad_token="<|im_end|>", bos_token="<|im_start|>")
    assert choose_pad_token(smol_like) == "<|endoftext|>"


def test_precision_follows_the_hardware_and_the_flag(monkeypatch):
    monkeypatch.setattr("piilab.runtime.cpu_supports_bf16", lambda: True)
    assert choose_precision("cpu", "auto")[:2] == (True, False)
    assert choose_precision("cpu", "off")[:2] == (False, False)
    monkeypatch.setattr("piilab.runtime.cpu_supports_bf16", lambda: False)
    bf16, fp16, reason = choose_precision("cpu", "auto")
    assert (bf16, fp16) == (False, False) and "no native bf16" in reason
    assert choose_precision("mps", "auto")[:2] == (False, False)
    with pytest.raises(PiilabError):
        choose_precision("mps", "on")


def test_prefix_sharing_and_compact_activations_are_cpu_defaults_and_flags_override():
    assert speed_settings("cpu", None, None)[:2] == (True, True)
    share, compact, reason = speed_settings("cuda", None, None)
    assert (share, compact) == (False, False) and "auto on cuda" in reason and "given" not in reason
    share, compact, reason = speed_settings("cuda", True, None)
    assert (share, compact) == (True, False) and "given: --share-prefix" in reason
    assert speed_settings("cpu", False, False)[:2] == (False, False)


def test_a_gpu_run_copies_batches_from_pinned_memory_without_waiting(tmp_path):
    from piilab.train.prepare import sft_config

    def arguments(device_type):
        return sft_config(config(), tmp_path, device_type=device_type, bf16=False, fp16=False, has_eval=False)

    gpu, cpu = arguments("cuda"), arguments("cpu")
    assert gpu.dataloader_pin_memory and gpu.accelerator_config.non_blocking
    assert not cpu.dataloader_pin_memory and not cpu.accelerator_config.non_blocking
    assert not gpu.logging_nan_inf_filter  # no loss read back per micro-batch to test it for nan


def test_qlora_on_cpu_is_a_one_line_error_naming_cuda():
    with pytest.raises(PiilabError, match="--qlora needs a CUDA GPU") as err:
        qlora_kwargs("cpu", compute_bf16=False)
    assert "\n" not in str(err.value)


# ---------------------------------------------------------------- loss and log


def test_the_run_log_is_rewritten_at_every_log_until_it_is_long_then_at_about_one_percent(tmp_path):
    from types import SimpleNamespace

    def state(n):
        return SimpleNamespace(is_world_process_zero=True, global_step=n,
                               log_history=[{"step": i, "loss": 1.0} for i in range(1, n + 1)])

    callback = RunLogCallback(tmp_path / "log.csv")
    callback._last_write = (float("inf"), 1.0)  # a rewrite that took 1 s and "just" ended
    callback.on_log(None, state(5), None)
    assert len(read_log_csv(tmp_path / "log.csv")) == 5  # short: written whatever the last took
    callback._last_write = (float("inf"), 1.0)
    callback.on_log(None, state(RunLogCallback.ALWAYS + 1), None)
    assert len(read_log_csv(tmp_path / "log.csv")) == 5  # long and not yet 100 s later: skipped
    callback.on_save(SimpleNamespace(output_dir=str(tmp_path)), state(RunLogCallback.ALWAYS + 1), None)
    assert len(read_log_csv(tmp_path / "log.csv")) == RunLogCallback.ALWAYS + 1  # checkpoints always


def test_token_cross_entropy_matches_torch_and_counts_hits():
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 0.0, 3.0]])
    targets = torch.tensor([0, 1])
    loss_sum, correct = token_cross_entropy(logits, targets)
    assert torch.isclose(loss_sum, torch.nn.functional.cross_entropy(logits, targets, reduction="sum"))
    assert correct.item() == 1


def test_log_rows_merge_train_and_eval_entries_by_step(tmp_path):
    history = [
        {"step": 1, "loss": 2.0, "learning_rate": 1e-3, "num_tokens": 100, "epoch": 0.5},
        {"step": 2, "loss": 1.5, "learning_rate": 9e-4, "num_tokens": 210, "epoch": 1.0},
        {"step": 2, "eval_loss": 1.7, "epoch": 1.0},
        {"step": 2, "train_runtime": 3.0, "train_loss": 1.75},
    ]
    rows = log_rows(history)
    assert [r["step"] for r in rows] == [1, 2]
    assert rows[1]["eval_loss"] == 1.7 and rows[1]["loss"] == 1.5 and rows[1]["lr"] == 9e-4
    write_log_csv(tmp_path / "log.csv", rows)
    back = read_log_csv(tmp_path / "log.csv")
    assert back[0] == {"step": 1, "epoch": 0.5, "loss": 2.0, "lr": 1e-3, "tokens": 100}
    assert back[1]["eval_loss"] == 1.7


# ---------------------------------------------------------------- the loss forward


def _loss_and_grads(model, batch, **settings):
    from piilab.train.trainer import install_completion_loss

    install_completion_loss(model, **settings)
    model.zero_grad(set_to_none=True)
    out = model(**batch, piilab_loss=True)
    out.loss.backward()
    return out, {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_shared_prefix_gives_the_same_loss_and_gradients(tokenizer, arch):
    from tiny import lora_batch, tiny_gpt2, tiny_llama

    from piilab.train.trainer import shared_prefix_length

    make, kwargs = (tiny_llama, {}) if arch == "llama" else (tiny_gpt2, dict(resid_pdrop=0.0, embd_pdrop=0.0,
                                                                            attn_pdrop=0.0))
    model, batch = lora_batch(tokenizer, make, **kwargs)
    assert shared_prefix_length(batch["input_ids"], batch["attention_mask"]) >= 8
    plain, g_plain = _loss_and_grads(model, batch, share_prefix=False)
    shared, g_shared = _loss_and_grads(model, batch, share_prefix=True)
    assert torch.allclose(plain.loss, shared.loss, atol=1e-6)
    assert g_plain.keys() == g_shared.keys() and len(g_plain) > 0
    assert all(torch.allclose(g_plain[k], g_shared[k], atol=1e-6) for k in g_plain)
    # The loss is the mean over answer tokens (and EOS) only: count them from the labels.
    assert plain.num_tokens.item() == (batch["labels"][:, 1:] != IGNORE_INDEX).sum().item()


class _OpsSeen:
    """The aten operations that run inside it."""

    def __enter__(self):
        from torch.utils._python_dispatch import TorchDispatchMode

        seen = self.seen = set()

        class Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                seen.add(func.overloadpacket.__name__)
                return func(*args, **(kwargs or {}))

        self.mode = Mode()
        self.mode.__enter__()
        return self

    def __exit__(self, *exc):
        return self.mode.__exit__(*exc)


def test_the_loss_at_the_collators_positions_is_the_masks_and_never_asks_how_many(tokenizer):
    from tiny import lora_batch, tiny_llama

    from piilab.train.trainer import AnswerIndexed, labelled_positions

    model, batch = lora_batch(tokenizer, tiny_llama)
    labels = batch["labels"]
    rows, length = labels.shape
    expected = [b * length + t for b in range(rows) for t in range(length - 1) if labels[b, t + 1] != IGNORE_INDEX]
    assert labelled_positions(labels).tolist() == expected and len(expected) > rows
    collated = AnswerIndexed(lambda features: dict(batch))([])
    assert torch.equal(collated["answer_index"], labelled_positions(labels))
    by_mask, g_mask = _loss_and_grads(model, batch)
    with _OpsSeen() as indexed_ops:
        by_index, g_index = _loss_and_grads(model, collated)
    assert torch.equal(by_mask.loss, by_index.loss) and torch.equal(by_mask.num_tokens, by_index.num_tokens)
    assert g_mask.keys() == g_index.keys() and all(torch.equal(g_mask[k], g_index[k]) for k in g_mask)
    with _OpsSeen() as mask_ops:
        _loss_and_grads(model, batch)
    # a boolean mask makes a GPU step wait for the device to say how many positions it selects
    assert "nonzero" in mask_ops.seen and "nonzero" not in indexed_ops.seen


def test_compact_activations_change_gradients_only_by_bf16_rounding(tokenizer, monkeypatch):
    from tiny import lora_batch, tiny_llama

    from piilab.train.trainer import CompactSavedActivations

    monkeypatch.setattr(CompactSavedActivations, "MIN_ELEMENTS", 0)  # the tiny model's are all small

    model, batch = lora_batch(tokenizer, tiny_llama)
    exact, g_exact = _loss_and_grads(model, batch, compact_activations=False)
    compact, g_compact = _loss_and_grads(model, batch, compact_activations=True)
    assert torch.equal(exact.loss, compact.loss)  # the forward is untouched
    def relative_error(a, b):
        return ((a - b).norm() / a.norm().clamp(min=1e-12)).item()

    # bf16 keeps 8 significant bits: about 1% on these gradients, a few % at worst.
    assert all(relative_error(g_exact[k], g_compact[k]) < 0.05 for k in g_exact)
    everything = [torch.cat([g[k].flatten() for k in sorted(g_exact)]) for g in (g_exact, g_compact)]
    assert relative_error(*everything) < 0.02
    assert any(not torch.equal(g_exact[k], g_compact[k]) for k in g_exact)  # it did compact


def test_shared_prefix_length_stops_at_the_first_difference_or_padding():
    from piilab.train.trainer import shared_prefix_length

    ids = torch.tensor([[1, 2, 3, 4, 0], [1, 2, 3, 5, 6]])
    assert shared_prefix_length(ids, torch.ones_like(ids)) == 3
    mask = torch.tensor([[1, 1, 0, 0, 0], [1, 1, 1, 1, 1]])
    assert shared_prefix_length(ids, mask) == 2


@pytest.mark.parametrize("targets, embeddings_saved", [("all-linear", False), (["q_proj", "lm_head"], True)])
def test_adapter_saves_never_ask_the_hub_about_the_base(tmp_path, monkeypatch, tokenizer, targets,
                                                       embeddings_saved):
    """An embedded base name ('smollm2-135m') is no Hub repo: saving must not look it up."""
    import peft.utils.save_and_load as peft_save
    from peft import LoraConfig, get_peft_model
    from tiny import tiny_llama

    from piilab.train.prepare import save_without_hub_lookup

    def no_hub(*args, **kwargs):
        raise AssertionError("asked the Hub")

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(peft_save, "check_file_exists_on_hf_hub", no_hub)
    model = get_peft_model(tiny_llama(tokenizer), LoraConfig(r=2, target_modules=targets))
    for peft_config in model.peft_config.values():
        peft_config.base_model_name_or_path = "smollm2-135m"
    save_without_hub_lookup(model)
    model.save_pretrained(tmp_path)
    from safetensors import safe_open

    with safe_open(tmp_path / "adapter_model.safetensors", "pt") as saved:
        assert any(key.endswith("base_layer.weight") for key in saved.keys()) == embeddings_saved


def test_glibc_mmap_threshold_is_set_unless_the_user_set_glibcs_own(monkeypatch):
    import platform

    from piilab.runtime import return_large_blocks_to_the_os

    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "1048576")
    assert return_large_blocks_to_the_os() is False  # the user's choice stands
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_")
    on_glibc = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
    assert return_large_blocks_to_the_os() is on_glibc
    from piilab import runtime

    assert runtime._threshold_set is on_glibc
    runtime.let_the_heap_keep_blocks_again()  # what train() does once the adapter is saved
    assert runtime._threshold_set is False


@pytest.mark.parametrize("targets, unknown", [
    (["foo", "bar"], "foo, bar"),
    (["q_proj", "mlp"], "mlp"),  # a block, not a layer LoRA can wrap
    (["proj"], "proj"),  # names match whole: PEFT takes q_proj only as q_proj or a path ending in it
])
def test_unknown_target_modules_are_named_with_the_models_linear_layers(tokenizer, targets, unknown):
    from tiny import tiny_llama

    model = tiny_llama(tokenizer)
    with pytest.raises(PiilabError) as caught:
        check_target_modules(model, targets)
    assert str(caught.value) == (
        f"--target-modules: no layer LoRA can wrap is named {unknown}; this model's linear layers are "
        "down_proj, gate_proj, k_proj, lm_head, o_proj, q_proj, up_proj, v_proj (or give all-linear)")
    check_target_modules(model, ["q_proj", "self_attn.v_proj", "embed_tokens"])  # PEFT takes these
    check_target_modules(model, "all-linear")


def test_cli_unknown_target_modules_is_one_line(tmp_path, tiny_llama_dir, capsys):
    from helpers import one_line_error

    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps(RECORD) + "\n")
    one_line_error(capsys, ["train", "--model", str(tiny_llama_dir), "--data", str(data), "--out",
                            str(tmp_path / "run"), "--target-modules", "foo,bar", "--max-steps", "1"],
                   "--target-modules: no layer LoRA can wrap is named foo, bar; this model's linear layers")
