"""Argument groups shared by several verbs."""

from __future__ import annotations

import argparse


def add_threads_arg(parser: argparse.ArgumentParser) -> None:
    """--threads; piilab.cli.main applies it (piilab.runtime.configure_threads) before the verb runs."""
    parser.add_argument("--threads", type=int, default=None, metavar="N",
                        help="CPU threads for torch (default: the cores this process may use, "
                             "less those other work keeps busy; OMP_NUM_THREADS is respected)")


def add_runtime_args(parser: argparse.ArgumentParser) -> None:
    """--device, --dtype and --threads, resolved once by piilab.runtime."""
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"],
                        help="where to run (auto: cuda, then mps, then cpu)")
    parser.add_argument("--dtype", default="auto",
                        choices=["auto", "float32", "bfloat16", "float16"],
                        help="weights dtype (auto: bf16 on GPUs that support it, else float32)")
    parser.add_argument("--trust-remote-code", action="store_true",
                        help="allow a model folder's own Python code to run (off by default)")
    add_threads_arg(parser)


def int_list(text: str) -> list[int]:
    """Parse '8,16,24' into [8, 16, 24]."""
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def add_decoding_args(parser: argparse.ArgumentParser, max_new_tokens: int = 64) -> None:
    """Decoding flags shared by generate, extract and eval (piilab.layers.decode.Decoding)."""
    group = parser.add_argument_group("decoding (greedy unless a sampling flag is given)")
    group.add_argument("--max-new-tokens", type=int, default=max_new_tokens,
                       help=f"new tokens per output at most (default {max_new_tokens})")
    group.add_argument("--sample", action="store_true", help="sample instead of greedy argmax")
    group.add_argument("--top-k", type=int, help="sample among the k most likely tokens")
    group.add_argument("--temperature", type=float, help="sampling temperature")
    group.add_argument("--eos-weight", type=float, default=1.0,
                       help="multiply the end-of-sequence probability by this")
    group.add_argument("--seed", type=int, default=0,
                       help="seed for sampling (and, in eval, for bootstrap resampling)")
    group.add_argument("--original-sampling", action="store_true",
                       help="the original experiment's sampling: top_k 5, temperature 0.1, "
                            "EOS weight 2.0")
    group.add_argument("--stop", action="append", default=[], metavar="TEXT",
                       help="end an output at this text (repeatable); the text is cut before it")


def add_free_decoding_arg(parser: argparse.ArgumentParser) -> None:
    """--free-decoding: PII answers without the copy constraint (layers/constrain.py)."""
    parser.add_argument("--free-decoding", action="store_true",
                        help="decode PII answers free, as the original experiment did (default: "
                             "an answer may only copy spans of the text and name labels of the set)")


def decoding_from_args(args: argparse.Namespace) -> dict:
    """The Decoding fields the flags ask for (a plain dict, so configs can store it)."""
    fields: dict = {"max_new_tokens": args.max_new_tokens}
    if args.original_sampling:
        fields.update(sample=True, top_k=5, temperature=0.1, eos_weight=2.0)
    sample = args.sample or args.top_k is not None or args.temperature is not None
    if sample:
        fields["sample"] = True
    for name in ("top_k", "temperature"):
        if getattr(args, name) is not None:
            fields[name] = getattr(args, name)
    if args.eos_weight != 1.0:
        fields["eos_weight"] = args.eos_weight
    if fields.get("sample"):
        fields["seed"] = args.seed
    if args.stop:
        fields["stop"] = list(args.stop)
    return fields


def decoding_from(args: argparse.Namespace):
    """The Decoding object the flags ask for."""
    from piilab.layers.decode import Decoding

    return Decoding(**decoding_from_args(args))
