"""Training runs on a tiny model: effects on weights, memorisation and EOS, RUN_DIR, resume, CLI."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tiny import save_model_dir, tiny_llama
from transformers import TrainerCallback

from piilab.cli import main
from piilab.io import write_jsonl
from piilab.models import load_model
from piilab.models.prompts import format_for
from piilab.train import TrainConfig, train
from piilab.train.run_log import read_log_csv

SECRET = "hf_piilabTestSecretToken1234567890"
# Both prompts open with the same instruction, as piilab's do, so batches share a prefix.
TASK = "Find the personal information in the text below. Answer: list each item.\n"
PII = {"prompt": TASK + "Jane Doe wrote to jane.doe@example.com about order 55-123.",
       "completion": "Jane Doe (NAME)\njane.doe@example.com (EMAIL)"}
NONE = {"prompt": TASK + "The capital of France is Paris.", "completion": "None"}


def record(i: int, pair: dict) -> dict:
    return {"id": f"r{i}", "source": "test", "text": pair["prompt"], "spans": [], "meta": {}, **pair}


def write_dataset(folder: Path, n: int = 8) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rows = [record(i, PII if i % 2 == 0 else NONE) for i in range(n)]
    write_jsonl(folder / "train.jsonl", rows)
    write_jsonl(folder / "test.jsonl", rows[:2])
    return folder


@pytest.fixture(scope="module")
def sharp_model_dir(tmp_path_factory, tokenizer) -> Path:
    """The tiny Llama with larger initial weights: its logits can get sharp enough under LoRA
    alone for the loss to fall far within a few dozen steps (with 0.02 they stay near-flat)."""
    model = tiny_llama(tokenizer, initializer_range=0.3)
    assert model.config.hidden_size == 32 and model.config.num_hidden_layers == 4
    return save_model_dir(model, tokenizer, tmp_path_factory.mktemp("sharp-llama"))


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("data"))


def tiny_config(model_dir: Path, data: Path, out: Path, **overrides) -> TrainConfig:
    settings = dict(data=str(data), out=str(out), model=str(model_dir), max_steps=40, lr=1e-2,
                    batch_size=8, lora_r=8, lora_dropout=0.0, warmup=0, scheduler="constant",
                    save_steps=1000, seed=0)
    return TrainConfig(**{**settings, **overrides})


class Snapshot(TrainerCallback):
    """Copies every weight when training starts, and keeps the model it trained."""

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.before = {k: v.detach().clone() for k, v in model.state_dict().items()}

    def on_train_end(self, args, state, control, model=None, **kwargs):
        self.model = model


class LogCapture(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(self.format(record))


@pytest.fixture(scope="module")
def trained(tmp_path_factory, sharp_model_dir, data_dir):
    """One 40-step run that memorises the data, with a hub token in the environment."""
    out = tmp_path_factory.mktemp("runs") / "run"
    config = tiny_config(sharp_model_dir, data_dir, out, eval_steps=20)
    snapshot, capture = Snapshot(), LogCapture()
    root = logging.getLogger()
    old_level, old_token = root.level, os.environ.get("HF_TOKEN")
    root.addHandler(capture)
    root.setLevel(logging.DEBUG)
    os.environ["HF_TOKEN"] = SECRET
    try:
        summary = train(config, callbacks=[snapshot])
    finally:
        root.removeHandler(capture)
        root.setLevel(old_level)
        if old_token is None:
            os.environ.pop("HF_TOKEN", None)
        else:
            os.environ["HF_TOKEN"] = old_token
    return dataclasses.make_dataclass("Trained", ["config", "summary", "snapshot", "logs"])(
        config, summary, snapshot, capture.lines)


def test_run_dir_is_an_adapter_folder_with_config_format_log_plot_and_metrics(trained, sharp_model_dir):
    run = Path(trained.config.out)
    for name in ("adapter_config.json", "adapter_model.safetensors", "tokenizer.json",
                 "train_config.json", "prompt_format.json", "prompt_settings.json", "train_log.csv",
                 "loss.png", "train_metrics.json"):
        assert (run / name).is_file(), name
    adapter = json.loads((run / "adapter_config.json").read_text())
    assert adapter["base_model_name_or_path"] == str(sharp_model_dir.resolve())
    saved = json.loads((run / "train_config.json").read_text())
    assert TrainConfig.from_dict(saved["config"]) == trained.config
    assert saved["runtime"]["lora_dropout"] == "none"  # the fixture's dropout is 0
    assert saved["runtime"]["pad_token"] != saved["runtime"]["eos_token"]
    assert (run / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = read_log_csv(run / "train_log.csv")
    assert [r["step"] for r in rows] == list(range(1, 41))
    assert [r["step"] for r in rows if "eval_loss" in r] == [20, 40]
    metrics = json.loads((run / "train_metrics.json").read_text())
    assert metrics["global_step"] == 40 == trained.summary.global_step
    assert metrics["eval_loss"] == pytest.approx(rows[-1]["eval_loss"], rel=1e-5)
    assert sorted(p.name for p in (run / "checkpoints").iterdir() if p.is_dir()) == ["checkpoint-40"]


def test_adapter_weights_change_and_base_weights_do_not(trained):
    before = trained.snapshot.before
    after = trained.snapshot.model.state_dict()
    lora = [k for k in before if "lora_" in k]
    base = [k for k in before if "lora_" not in k]
    assert lora and base
    assert all(not torch.equal(before[k], after[k]) for k in lora if "lora_B" in k)
    assert all(torch.equal(before[k], after[k]) for k in base)
    assert all(not after[k].requires_grad or "lora_" in k for k in base)


def test_loss_falls_and_the_tuned_model_reproduces_the_answer_then_stops(trained, sharp_model_dir):
    rows = read_log_csv(Path(trained.config.out) / "train_log.csv")
    assert rows[-1]["loss"] < 0.25 * rows[0]["loss"]
    assert rows[-1]["token_accuracy"] == 1.0

    run = trained.config.out
    tuned, tokenizer = load_model(run)  # --model RUN_DIR
    fmt = format_for(tokenizer, run)
    vanilla, _ = load_model(str(sharp_model_dir))
    for pair in (PII, NONE):
        inputs = tokenizer(fmt.render(tokenizer, pair["prompt"]), return_tensors="pt",
                           add_special_tokens=fmt.add_special_tokens)
        n = inputs["input_ids"].shape[1]
        out = tuned.generate(**inputs, max_new_tokens=40, do_sample=False)[0, n:]
        assert out[-1].item() == tokenizer.eos_token_id  # it stopped, at EOS
        assert tokenizer.decode(out[:-1]) == pair["completion"]
        base = vanilla.generate(**inputs, max_new_tokens=len(out), do_sample=False)[0, n:]
        assert tokenizer.decode(base, skip_special_tokens=True) != pair["completion"]


def test_adapter_flag_loads_the_same_model(trained, sharp_model_dir):
    a, _ = load_model(trained.config.out)
    b, _ = load_model(str(sharp_model_dir), adapter=trained.config.out)
    ids = torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad():
        assert torch.equal(a(ids).logits, b(ids).logits)


def test_hub_token_from_the_environment_is_never_written_or_logged(trained):
    run = Path(trained.config.out)
    files = [p for p in run.rglob("*") if p.is_file()]
    assert any(p.suffix == ".bin" for p in files)  # pickled training args are searched too
    for path in files:
        assert SECRET.encode() not in path.read_bytes(), path
    assert trained.logs and not any(SECRET in line for line in trained.logs)


def test_the_trainers_batches_ignore_prompt_and_padding_and_share_a_prefix(tmp_path, sharp_model_dir, data_dir):
    from piilab.train import IGNORE_INDEX
    from piilab.train.prepare import build_trainer
    from piilab.train.trainer import shared_prefix_length

    run = build_trainer(tiny_config(sharp_model_dir, data_dir, tmp_path / "run", batch_size=4))
    # Building writes nothing (the Trainer makes its empty output folder, RUN_DIR/checkpoints).
    assert [p.relative_to(tmp_path).as_posix() for p in (tmp_path / "run").rglob("*")] == ["run/checkpoints"]
    tokenizer = run.trainer.processing_class
    batch = next(iter(run.trainer.get_train_dataloader()))
    labels, ids, mask = batch["labels"], batch["input_ids"], batch["attention_mask"]
    assert (labels[mask == 0] == IGNORE_INDEX).all()
    for row in range(len(ids)):
        real = ids[row][mask[row] == 1].tolist()
        prompt = PII["prompt"] if tokenizer.decode(real).find("Jane Doe wrote") >= 0 else NONE["prompt"]
        n = len(tokenizer(run.fmt.render(tokenizer, prompt), add_special_tokens=False)["input_ids"])
        assert (labels[row, :n] == IGNORE_INDEX).all()
        answer = labels[row, n:len(real)]
        assert (answer != IGNORE_INDEX).all() and answer[-1] == tokenizer.eos_token_id
    assert shared_prefix_length(ids, mask) >= 8  # the instruction runs once per batch
    # where the loss is taken, found by the collator: every labelled next token, nothing else
    at = batch["answer_index"]
    assert (labels.flatten()[at + 1] != IGNORE_INDEX).all()
    assert len(at) == (labels[:, 1:] != IGNORE_INDEX).sum() and (at % labels.shape[1] < labels.shape[1] - 1).all()
    # no per-micro-batch host work a GPU would wait for: the flop estimate counts the parameters
    # once (transformers walks the whole model each time)
    model, counted = run.trainer.model, []
    count = model.num_parameters
    model.num_parameters = lambda **kw: counted.append(kw) or count(**kw)
    flops = [run.trainer.floating_point_ops(batch) for _ in range(3)]
    assert flops == [6 * ids.numel() * count(exclude_embeddings=True)] * 3 and len(counted) == 1


def test_a_packed_row_takes_the_loss_of_its_records_apart(tmp_path, sharp_model_dir, data_dir):
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    from piilab.train import IGNORE_INDEX
    from piilab.train.prepare import build_trainer

    run = build_trainer(tiny_config(sharp_model_dir, data_dir, tmp_path / "run", packing=True,
                                    max_length=256))
    packed = next(iter(run.trainer.get_train_dataloader()))
    assert packed["input_ids"].shape[0] == 1 and "position_ids" in packed  # one padding-free row
    starts = (packed["position_ids"][0] == 0).nonzero().flatten().tolist() + [packed["input_ids"].shape[1]]
    assert len(starts) > 2  # several records in it
    records = [{"input_ids": packed["input_ids"][0, a:b].tolist(), "labels": packed["labels"][0, a:b].tolist()}
               for a, b in zip(starts, starts[1:])]
    apart = DataCollatorForLanguageModeling(pad_token_id=run.trainer.processing_class.pad_token_id)(records)
    at = packed["answer_index"]
    # a record's first token is prompt: no position predicts across two records
    assert (packed["labels"].flatten()[at + 1] != IGNORE_INDEX).all()
    model = run.trainer.model.eval()
    with torch.no_grad():
        together = model(**packed, piilab_loss=True)
        separate = model(**{k: v for k, v in apart.items() if k != "position_ids"}, piilab_loss=True)
    assert together.num_tokens == separate.num_tokens == len(at)
    assert torch.allclose(together.loss, separate.loss, atol=1e-5)


@pytest.mark.parametrize("cpu_memory, lowered", [("lean", True), ("fast", False)])
def test_cpu_memory_decides_whether_glibc_returns_large_blocks(tmp_path, sharp_model_dir, data_dir,
                                                               monkeypatch, cpu_memory, lowered):
    from piilab.train import prepare as train_module

    calls = []
    monkeypatch.setattr(train_module, "return_large_blocks_to_the_os", lambda: calls.append(1) or True)
    run = train_module.build_trainer(tiny_config(sharp_model_dir, data_dir, tmp_path / "run", device="cpu",
                                                 cpu_memory=cpu_memory))
    assert bool(calls) is lowered
    # with glibc's heap left alone, batches come in a few lengths (multiples of 64 tokens) so that
    # freed blocks fit the next batch's; lean mode pads to the longest row only
    rows = [run.trainer.train_dataset[i] for i in range(3)]
    batch = run.trainer.data_collator(rows)
    longest = max(len(r["input_ids"]) for r in rows)
    want = -(-longest // train_module.FAST_HEAP_LENGTH_STEP) * train_module.FAST_HEAP_LENGTH_STEP
    assert batch["input_ids"].shape[1] == (longest if lowered else want)
    assert int(batch["attention_mask"].sum()) == sum(len(r["input_ids"]) for r in rows)  # padding masked


# ---------------------------------------------------------------- resume


class KillAt(TrainerCallback):
    """Dies right after step `step` is logged, as a killed process would (no save at that step)."""

    def __init__(self, step: int):
        self.step = step

    def on_log(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise KeyboardInterrupt(f"killed after step {self.step}")


def test_a_killed_run_resumes_to_the_planned_step_with_nothing_lost_or_repeated(
        tmp_path, sharp_model_dir, data_dir, monkeypatch):
    plan = dict(max_steps=6, save_steps=2, lr=3e-3, scheduler="cosine", warmup=1, lora_dropout=0.1)
    whole = train(tiny_config(sharp_model_dir, data_dir, tmp_path / "whole", **plan))

    import piilab.train.run

    restored, restore = [], piilab.train.run.let_the_heap_keep_blocks_again
    monkeypatch.setattr(piilab.train.run, "let_the_heap_keep_blocks_again",
                        lambda: restored.append(1) or restore())
    killed = tiny_config(sharp_model_dir, data_dir, tmp_path / "killed", **plan)
    with pytest.raises(KeyboardInterrupt):
        train(killed, callbacks=[KillAt(5)])
    assert restored == [1]  # the heap's training setting undone though the run died
    logged = read_log_csv(tmp_path / "killed" / "train_log.csv")
    assert [r["step"] for r in logged] == [1, 2, 3, 4, 5]  # step 5 logged, last checkpoint at 4
    resumed = train(dataclasses.replace(killed, resume=True))

    assert resumed.global_step == 6 and resumed.resumed_from_step == 4
    runtime = json.loads((tmp_path / "killed" / "train_config.json").read_text())["runtime"]
    assert runtime["lora_dropout"] == "masks from packed random bits on 28 LoRA layers"  # 4 x 7
    rows = read_log_csv(tmp_path / "killed" / "train_log.csv")
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6]
    reference = read_log_csv(tmp_path / "whole" / "train_log.csv")
    for got, want in zip(rows, reference, strict=True):
        assert got["loss"] == pytest.approx(want["loss"], rel=1e-4)
        assert got["lr"] == pytest.approx(want["lr"], rel=1e-6)
        assert got["tokens"] == want["tokens"]  # cumulative tokens continue from the checkpoint
    # the run's tokens and time: the checkpoint's, plus this session's
    assert resumed.real_tokens == whole.real_tokens == rows[-1]["tokens"]
    progress = json.loads((tmp_path / "killed" / "checkpoints" / "checkpoint-4" / "piilab_progress.json").read_text())
    assert progress["real_tokens"] == rows[3]["tokens"] and progress["train_seconds"] > 0
    assert resumed.train_seconds > progress["train_seconds"] and resumed.tokens_per_second > 0
    from safetensors.torch import load_file

    a = load_file(tmp_path / "killed" / "adapter_model.safetensors")
    b = load_file(tmp_path / "whole" / "adapter_model.safetensors")
    assert a.keys() == b.keys()
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)
    assert whole.global_step == 6


def test_resume_refuses_a_changed_plan_and_a_fresh_run_refuses_a_used_folder(
        tmp_path, sharp_model_dir, data_dir):
    from piilab.errors import PiilabError

    config = tiny_config(sharp_model_dir, data_dir, tmp_path / "run", max_steps=2)
    train(config)
    with pytest.raises(PiilabError, match="already holds files"):
        train(config)
    with pytest.raises(PiilabError, match="lr="):
        train(dataclasses.replace(config, resume=True, lr=1e-3))
    # --resume on a finished run trains nothing and keeps the figures of the session that did
    metrics = json.loads((tmp_path / "run" / "train_metrics.json").read_text())
    assert metrics["train_seconds"] > 0 and metrics["real_tokens"] > 0
    again = train(dataclasses.replace(config, resume=True))
    assert json.loads((tmp_path / "run" / "train_metrics.json").read_text()) == metrics
    assert (again.train_seconds, again.real_tokens) == (metrics["train_seconds"], metrics["real_tokens"])
    # --resume on a folder that holds no run yet starts one, so scripts can always pass it.
    fresh = train(dataclasses.replace(config, out=str(tmp_path / "new"), resume=True))
    assert fresh.global_step == 2 and fresh.resumed_from_step == 0


# ---------------------------------------------------------------- full fine-tuning


@pytest.fixture(scope="module")
def fully_tuned(tmp_path_factory, sharp_model_dir, data_dir):
    out = tmp_path_factory.mktemp("full") / "run"
    snapshot = Snapshot()
    config = tiny_config(sharp_model_dir, data_dir, out, full_finetune=True, lr=3e-3, max_steps=30)
    summary = train(config, callbacks=[snapshot])
    return dataclasses.make_dataclass("FullyTuned", ["config", "summary", "snapshot"])(config, summary, snapshot)


def test_full_finetuning_trains_the_blocks_around_a_fixed_vocabulary(fully_tuned):
    before, model = fully_tuned.snapshot.before, fully_tuned.snapshot.model
    after = model.state_dict()
    vocabulary = {"model.embed_tokens.weight", "lm_head.weight"}
    assert vocabulary <= set(before) and not any("lora_" in k for k in before)
    assert all(torch.equal(before[k], after[k]) for k in vocabulary)
    blocks = [k for k in before if ".layers." in k and k.endswith("proj.weight")]
    assert len(blocks) == 4 * 7
    assert all(not torch.equal(before[k], after[k]) for k in blocks)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert fully_tuned.summary.trainable_parameters == trainable
    assert trainable == sum(p.numel() for p in model.parameters()) - model.get_input_embeddings().weight.numel()


def test_full_finetuning_under_gradient_checkpointing_still_trains_every_block(tmp_path, sharp_model_dir, data_dir):
    # With the embeddings frozen, the first block's input needs no gradient: checkpointing must
    # not let that cut the blocks off from the loss.
    snapshot = Snapshot()
    train(tiny_config(sharp_model_dir, data_dir, tmp_path / "run", full_finetune=True,
                      gradient_checkpointing=True, max_steps=2, lr=3e-3), callbacks=[snapshot])
    after = snapshot.model.state_dict()
    unchanged = {k for k, v in snapshot.before.items() if torch.equal(v, after[k])}
    assert unchanged == {"model.embed_tokens.weight", "lm_head.weight"}


def test_a_full_run_dir_is_a_model_folder_that_answers_then_stops(fully_tuned, sharp_model_dir):
    run = Path(fully_tuned.config.out)
    for name in ("config.json", "model.safetensors", "tokenizer.json", "train_config.json",
                 "prompt_format.json", "train_log.csv", "train_metrics.json"):
        assert (run / name).is_file(), name
    assert not (run / "adapter_config.json").exists()
    rows = read_log_csv(run / "train_log.csv")
    assert rows[-1]["loss"] < 0.25 * rows[0]["loss"]
    tuned, tokenizer = load_model(str(run))  # --model RUN_DIR, no PEFT
    assert not any("lora" in name for name, _ in tuned.named_parameters())
    fmt = format_for(tokenizer, run)
    for pair in (PII, NONE):
        inputs = tokenizer(fmt.render(tokenizer, pair["prompt"]), return_tensors="pt",
                           add_special_tokens=fmt.add_special_tokens)
        n = inputs["input_ids"].shape[1]
        out = tuned.generate(**inputs, max_new_tokens=40, do_sample=False)[0, n:]
        assert out[-1].item() == tokenizer.eos_token_id
        assert tokenizer.decode(out[:-1]) == pair["completion"]


def test_later_stages_follow_the_prompt_format_of_a_full_run(fully_tuned, sharp_model_dir):
    from piilab.models import trained_folder

    run = fully_tuned.config.out
    assert trained_folder(run) == str(Path(run))
    assert trained_folder(str(sharp_model_dir), adapter="/some/adapter") == "/some/adapter"
    assert trained_folder("smollm2-135m") is None


def test_a_full_run_resumes_from_its_final_checkpoint_and_refuses_merge_and_qlora(
        tmp_path, sharp_model_dir, data_dir):
    from safetensors.torch import load_file

    from piilab.errors import PiilabError

    config = tiny_config(sharp_model_dir, data_dir, tmp_path / "run", full_finetune=True, lr=3e-3,
                         max_steps=4, save_steps=2)
    train(config)
    run = tmp_path / "run"
    want = load_file(run / "model.safetensors")
    (run / "model.safetensors").unlink()  # killed after the last checkpoint, before the save
    resumed = train(dataclasses.replace(config, resume=True))
    assert resumed.global_step == 4 and resumed.resumed_from_step == 4
    got = load_file(run / "model.safetensors")
    assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)
    with pytest.raises(PiilabError, match="already a plain model folder"):
        from piilab.train import merge
        merge(run, tmp_path / "merged")
    with pytest.raises(PiilabError, match="cannot be combined with --qlora"):
        dataclasses.replace(config, qlora=True)


# ---------------------------------------------------------------- CLI


def test_cli_train_resume_and_merge(tmp_path, sharp_model_dir, data_dir, capsys):
    run, merged = tmp_path / "run", tmp_path / "merged"
    assert main(["train", "--model", str(sharp_model_dir), "--data", str(data_dir), "--out", str(run),
                 "--max-steps", "3", "--batch-size", "4", "--lora-r", "4", "--lr", "1e-2",
                 "--save-steps", "2"]) == 0
    saved = json.loads((run / "train_config.json").read_text())["config"]
    assert (saved["max_steps"], saved["batch_size"], saved["lora_r"], saved["lr"]) == (3, 4, 4, 1e-2)
    # --resume needs nothing but the folder: the plan comes from train_config.json.
    assert main(["train", "--out", str(run), "--resume"]) == 0
    assert json.loads((run / "train_metrics.json").read_text())["global_step"] == 3

    from piilab.second_look import save_threshold, threshold_for

    save_threshold(run, 0.02)  # a recipe's extract defaults, beside the adapter
    assert main(["merge", str(run), "--out", str(merged)]) == 0
    assert threshold_for(merged)[0] == 0.02  # the merged model keeps them
    from transformers import AutoModelForCausalLM

    plain = AutoModelForCausalLM.from_pretrained(merged)
    assert not any("lora" in name for name, _ in plain.named_parameters())
    assert (merged / "prompt_format.json").read_text() == (run / "prompt_format.json").read_text()
    adapted, _ = load_model(str(run))
    ids = torch.tensor([[5, 6, 7, 8, 9]])
    with torch.no_grad():
        assert torch.allclose(plain(ids).logits, adapted(ids).logits, atol=1e-4)


def test_cli_full_finetune_with_an_early_exit_writes_a_model_that_merge_refuses(
        tmp_path, sharp_model_dir, data_dir, capsys):
    run = tmp_path / "run"
    assert main(["train", "--model", str(sharp_model_dir), "--data", str(data_dir), "--out", str(run),
                 "--max-steps", "2", "--batch-size", "4", "--lr", "1e-3", "--full-finetune",
                 "--exit-layers", "2"]) == 0
    assert f"model in {run}" in capsys.readouterr().out
    saved = json.loads((run / "train_config.json").read_text())["config"]
    assert saved["full_finetune"] is True and saved["exit_layers"] == [2]
    assert (run / "model.safetensors").is_file() and not (run / "adapter_config.json").exists()
    assert "exit_loss_L2" in (run / "train_log.csv").read_text().splitlines()[0]
    assert main(["merge", str(run), "--out", str(tmp_path / "merged")]) == 2
    assert "already a plain model folder" in capsys.readouterr().err


def test_cli_errors_are_one_line(tmp_path, data_dir, sharp_model_dir, capsys):
    args = ["train", "--model", str(sharp_model_dir), "--data", str(data_dir), "--out", str(tmp_path / "q")]
    if not torch.cuda.is_available():
        assert main([*args, "--qlora", "--device", "cpu"]) == 2
        last = capsys.readouterr().err.strip().splitlines()[-1]
        assert last.startswith("piilab: error: --qlora needs a CUDA GPU")
    assert main(["train", "--out", str(tmp_path / "none")]) == 2
    assert "--data" in capsys.readouterr().err
    assert main(["merge", str(data_dir), "--out", str(tmp_path / "m")]) == 2


# ---------------------------------------------------------------- several processes, QLoRA


@pytest.mark.slow
def test_two_processes_under_torchrun_train_one_adapter(tmp_path, sharp_model_dir, data_dir):
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "piilab", "train", "--model", str(sharp_model_dir), "--data", str(data_dir),
           "--out", str(out), "--max-steps", "3", "--batch-size", "2", "--lora-r", "4", "--device", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads((out / "train_metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["global_step"] == 3
    assert (out / "adapter_model.safetensors").is_file()
    assert [r["step"] for r in read_log_csv(out / "train_log.csv")] == [1, 2, 3]
    load_model(str(out))  # the adapter it wrote loads


def _bitsandbytes() -> bool:
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.skipif(not torch.cuda.is_available() or not _bitsandbytes(),
                    reason="QLoRA needs CUDA and bitsandbytes")
def test_qlora_trains_a_lora_on_a_4bit_base(tmp_path, tokenizer, data_dir):
    model_dir = save_model_dir(tiny_llama(tokenizer, hidden_size=64, intermediate_size=128),
                               tokenizer, tmp_path / "base")
    summary = train(tiny_config(model_dir, data_dir, tmp_path / "q", qlora=True, max_steps=3, device="cuda"))
    assert summary.global_step == 3
    assert (tmp_path / "q" / "adapter_model.safetensors").is_file()
    model, _ = load_model(str(tmp_path / "q"), device="cuda")
    assert torch.isfinite(model(torch.tensor([[5, 6, 7]], device="cuda")).logits).all()


def test_counts_are_read_back_from_the_device_once_per_log_not_per_micro_batch(tmp_path, sharp_model_dir,
                                                                               data_dir, monkeypatch):
    """On a GPU each read-back (a gather, then `.item()` or `.tolist()`) makes the host wait:
    piilab's token counts stay on the device over the micro-batches of a step until the log."""
    from piilab.train.trainer import PiilabSFTTrainer

    gathers = {"n": 0}
    build = PiilabSFTTrainer.__init__

    def counting(self, *args, **kwargs):
        build(self, *args, **kwargs)
        for name in ("gather", "gather_for_metrics"):
            original = getattr(self.accelerator, name)

            def gather(tensor, *a, _original=original, **k):
                gathers["n"] += 1
                return _original(tensor, *a, **k)
            setattr(self.accelerator, name, gather)

    monkeypatch.setattr(PiilabSFTTrainer, "__init__", counting)
    summary = train(tiny_config(sharp_model_dir, data_dir, tmp_path / "run", max_steps=3, batch_size=2,
                                grad_accum=4, share_prefix=False, compact_activations=False))
    assert summary.global_step == 3 and summary.real_tokens > 0
    assert gathers["n"] <= 2 * 3  # two per log (counts, real tokens); it was two per micro-batch: 24
    rows = read_log_csv(tmp_path / "run" / "train_log.csv")
    assert [r["step"] for r in rows] == [1, 2, 3] and all(0 <= r["token_accuracy"] <= 1 for r in rows)
    assert rows[-1]["tokens"] == summary.real_tokens and rows[0]["tokens"] < rows[-1]["tokens"]
