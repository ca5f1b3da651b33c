"""Benchmark: decoding PII prompts from exit layers 8, 16, 24 and 30 of SmolLM2-135M, three ways.

    python benchmarks/layer_sweep.py [--prompts 32] [--layers 8,16,24,30] [--new-tokens 35]
                                     [--original-samples 2] [--threads N] [--json OUT]

Measured side by side in one run, on the same prompts (synthetic PII passages in piilab's default
prompt style, through the model's chat template):

(a) the original algorithm: one sample at a time, for every new token a full forward pass of all
    layers over the whole sequence (no KV cache), then the unembedding of hidden_states[L] without
    the final norm. It takes seconds per token, so it runs on a few samples only and is reported
    per sample and layer (the original also reloaded the model per layer; that is not counted).
(b) Hugging Face `generate` with its KV cache on the model truncated to L layers, layer by layer,
    in batches of 8 (greedy).
(c) piilab: `piilab.layers.decode.generate`, all layers at once, batches of 8 (greedy).

(b), (c) and a share of the (a) runs alternate batch by batch, so that a load change on a shared
machine hits all three alike.
Targets (issue 5): (c) >= 50x faster than (a) per sample and layer; (c) <= 0.7x the time of (b).
Also prints how many (prompt, layer) outputs of (b) and (c) agree token for token.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch


def pii_prompts(tokenizer, n: int, seed: int = 0) -> list[str]:
    """n synthetic PII passages as instruction prompts, rendered through the chat template."""
    from piilab.data.instruct import get_style
    from piilab.data.labels import DEFAULT_LABELS
    from piilab.data.synth import SynthConfig, synthesize
    from piilab.models.prompts import format_for

    fmt, style = format_for(tokenizer), get_style("default")
    return [fmt.render(tokenizer, style.pii(doc.text, DEFAULT_LABELS))
            for doc in synthesize(SynthConfig(n=n, seed=seed))]


def original(model, ids: torch.Tensor, layer: int, new_tokens: int, eos: int) -> list[int]:
    """(a): full forward per token, lm_head(hidden_states[L]) without the final norm, no cache."""
    from piilab.models import arch

    out = []
    for _ in range(new_tokens):
        hidden = model(ids, output_hidden_states=True).hidden_states[layer]  # (1, T, H)
        token = int(arch.unembedding(model)(hidden[:, -1]).argmax(-1))
        out.append(token)
        if token == eos:
            break
        ids = torch.cat([ids, torch.tensor([[token]])], dim=-1)
    return out


def hf_batch(model, tokenizer, prompts: list[str], layer: int, new_tokens: int) -> list[list[int]]:
    """(b): `generate` with the KV cache on the model cut to `layer` blocks, one batch."""
    from piilab.models import arch

    tokenizer.padding_side = "left"
    enc = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    with arch.truncated(model, layer):
        out = model.generate(**enc, max_new_tokens=new_tokens, do_sample=False,
                             pad_token_id=tokenizer.pad_token_id)
    rows = []
    for row in out[:, enc.input_ids.shape[1]:].tolist():
        ends = [i for i, t in enumerate(row) if t == tokenizer.eos_token_id]
        rows.append(row[: ends[0] + 1] if ends else row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--layers", default="8,16,24,30")
    parser.add_argument("--new-tokens", type=int, default=35)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--original-samples", type=int, default=2,
                        help="samples for (a), each decoded from every layer")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()

    from piilab.layers.decode import Decoding, generate
    from piilab.models import load_model

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.set_grad_enabled(False)
    layers = [int(x) for x in args.layers.split(",")]
    model, tokenizer = load_model(args.model, device="cpu", dtype="float32")
    prompts = pii_prompts(tokenizer, args.prompts)
    lengths = [len(tokenizer(p, add_special_tokens=False).input_ids) for p in prompts]
    print(f"{args.model}: {len(prompts)} prompts of {min(lengths)}-{max(lengths)} tokens "
          f"(mean {sum(lengths) / len(lengths):.0f}), layers {layers}, {args.new_tokens} new tokens, "
          f"batches of {args.batch_size}, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}")

    # (b), (c) and a share of (a), batch by batch, so that load changes hit all three alike
    decoding = Decoding(max_new_tokens=args.new_tokens)
    n_batches = -(-len(prompts) // args.batch_size)
    a_plan = [(i, layer) for i in range(args.original_samples) for layer in layers]
    b_seconds = c_seconds = a_seconds = 0.0
    agree = total = a_runs = 0
    for batch_no, first in enumerate(range(0, len(prompts), args.batch_size)):
        batch = prompts[first:first + args.batch_size]
        start = time.perf_counter()
        hf = {layer: hf_batch(model, tokenizer, batch, layer, args.new_tokens) for layer in layers}
        b_seconds += time.perf_counter() - start
        start = time.perf_counter()
        ours = generate(model, tokenizer, batch, layers, decoding=decoding, batch_size=args.batch_size,
                        add_special_tokens=False, progress=False, return_details=True)
        c_seconds += time.perf_counter() - start
        for layer in layers:
            agree += sum(a == b for a, b in zip(hf[layer], ours.token_ids[layer]))
            total += len(batch)
        for i, layer in a_plan[batch_no::n_batches]:
            ids = tokenizer(prompts[i], return_tensors="pt", add_special_tokens=False).input_ids
            start = time.perf_counter()
            original(model, ids, layer, args.new_tokens, tokenizer.eos_token_id)
            a_seconds += time.perf_counter() - start
            a_runs += 1
        print(f"  batch {batch_no + 1}/{n_batches}: (b) {b_seconds:.1f} s, (c) {c_seconds:.1f} s, "
              f"(a) {a_runs} sample-layers {a_seconds:.1f} s so far", flush=True)

    pairs = len(prompts) * len(layers)
    a, b, c = a_seconds / max(a_runs, 1), b_seconds / pairs, c_seconds / pairs
    figures = {
        "model": args.model, "prompts": len(prompts), "layers": layers, "new_tokens": args.new_tokens,
        "batch_size": args.batch_size, "threads": torch.get_num_threads(),
        "prompt_tokens_mean": sum(lengths) / len(lengths),
        "a_original_s_per_sample_layer": a, "a_samples": args.original_samples,
        "b_hf_generate_total_s": b_seconds, "b_s_per_sample_layer": b,
        "c_piilab_total_s": c_seconds, "c_s_per_sample_layer": c,
        "speedup_vs_original": a / c, "time_vs_hf_generate": c / b,
        "greedy_agreement_b_c": agree / total,
    }
    print(f"(a) original algorithm    {a:8.3f} s per sample and layer ({a_runs} runs)")
    print(f"(b) HF generate, truncated {b:8.3f} s per sample and layer ({b_seconds:.1f} s total)")
    print(f"(c) piilab                 {c:8.3f} s per sample and layer ({c_seconds:.1f} s total)")
    print(f"(a)/(c) = {a / c:.0f}x faster than the original (target >= 50x): "
          f"{'met' if a / c >= 50 else 'NOT met'}")
    print(f"(c)/(b) = {c / b:.2f} of HF generate's time (target <= 0.7): "
          f"{'met' if c / b <= 0.7 else 'NOT met'}")
    print(f"(b) and (c) agree token for token on {agree}/{total} (prompt, layer) outputs")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(figures, handle, indent=2)


if __name__ == "__main__":
    main()
