"""`piilab merge RUN_DIR --out DIR`: fold a trained adapter into a plain model folder."""

from __future__ import annotations

from piilab.train import merge


def register(subparsers) -> None:
    parser = subparsers.add_parser("merge", help="merge a LoRA run folder into a plain model (safetensors)")
    parser.add_argument("run_dir", metavar="RUN_DIR", help="adapter folder written by `piilab train`")
    parser.add_argument("--out", required=True, metavar="DIR", help="new folder for the merged model")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"],
                        help="where to merge (auto: cuda, then mps, then cpu)")
    parser.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"],
                        help="weights dtype of the merged model (auto: bf16 on GPUs, else float32)")
    parser.set_defaults(func=run_merge)


def run_merge(args) -> int:
    out = merge(args.run_dir, args.out, device=args.device, dtype=args.dtype)
    print(f"merged model in {out}")
    return 0
