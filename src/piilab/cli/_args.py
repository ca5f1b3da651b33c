"""Argument groups shared by several verbs."""

from __future__ import annotations

import argparse


def add_runtime_args(parser: argparse.ArgumentParser) -> None:
    """--device and --dtype, resolved once by piilab.runtime."""
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"],
                        help="where to run (auto: cuda, then mps, then cpu)")
    parser.add_argument("--dtype", default="auto",
                        choices=["auto", "float32", "bfloat16", "float16"],
                        help="weights dtype (auto: bf16 on GPUs that support it, else float32)")
    parser.add_argument("--trust-remote-code", action="store_true",
                        help="allow a model folder's own Python code to run (off by default)")


def int_list(text: str) -> list[int]:
    """Parse '8,16,24' into [8, 16, 24]."""
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
