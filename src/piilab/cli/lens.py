"""`piilab lens train`: a tuned lens for a model (piilab.layers.tuned_lens), used as --lens tuned:DIR."""

from __future__ import annotations

import argparse

from piilab.cli._args import add_runtime_args, int_list
from piilab.layers.lens_training import POSITIONS, LensTrainConfig, train_lens
from piilab.models import DEFAULT_MODEL

_DEFAULTS = LensTrainConfig(model="", data="", out="")


def register(subparsers: argparse._SubParsersAction) -> None:
    lens = subparsers.add_parser("lens", help="train lenses that read early layers better")
    verbs = lens.add_subparsers(dest="lens_command", metavar="VERB", required=True)

    train = verbs.add_parser(
        "train", help="a tuned lens: one affine translator per layer, trained by KL to the last "
                      "layer; use it with --lens tuned:OUT")
    train.add_argument("--model", default=DEFAULT_MODEL,
                       help=f"model spec (default {DEFAULT_MODEL})")
    train.add_argument("--adapter", help="PEFT adapter (training run folder) applied to the model")
    train.add_argument("--data", required=True,
                       help="dataset folder (train.jsonl; test.jsonl for the held-out KL) or JSONL")
    train.add_argument("--out", required=True, metavar="LENS_DIR", help="lens folder to write")
    train.add_argument("--layers", type=int_list,
                       help="layers to give a translator, e.g. 8,16,24 (default: all but the last)")
    train.add_argument("--steps", type=int, default=_DEFAULTS.steps, help="optimisation steps")
    train.add_argument("--lr", type=float, default=_DEFAULTS.lr, help="peak Adam learning rate")
    train.add_argument("--warmup", type=float, default=_DEFAULTS.warmup,
                       help="share of steps warming the learning rate up")
    train.add_argument("--weight-decay", type=float, default=_DEFAULTS.weight_decay,
                       help="pulls each translator towards the identity")
    train.add_argument("--batch-tokens", type=int, default=_DEFAULTS.batch_tokens,
                       help="token positions per step")
    train.add_argument("--batch-size", type=int, default=_DEFAULTS.batch_size,
                       help="records per forward pass while collecting hidden states")
    train.add_argument("--max-length", type=int, default=_DEFAULTS.max_length,
                       help="skip records longer than this many tokens")
    train.add_argument("--max-tokens", type=int, default=_DEFAULTS.max_tokens,
                       help="training positions to collect at most (memory)")
    train.add_argument("--positions", default=_DEFAULTS.positions, choices=POSITIONS,
                       help="answer: positions that predict the completion; all: every position")
    train.add_argument("--eval-records", type=int, default=_DEFAULTS.eval_records,
                       help="held-out records for the KL report")
    train.add_argument("--seed", type=int, default=_DEFAULTS.seed)
    add_runtime_args(train)
    train.set_defaults(func=run_train)


def run_train(args: argparse.Namespace) -> int:
    config = LensTrainConfig(
        model=args.model, adapter=args.adapter, data=args.data, out=args.out, layers=args.layers,
        steps=args.steps, lr=args.lr, warmup=args.warmup, weight_decay=args.weight_decay,
        batch_tokens=args.batch_tokens, batch_size=args.batch_size, max_length=args.max_length,
        max_tokens=args.max_tokens, positions=args.positions, eval_records=args.eval_records,
        seed=args.seed, device=args.device, dtype=args.dtype,
        trust_remote_code=args.trust_remote_code,
    )
    result = train_lens(config)
    logit, tuned = result["kl"]["logit_lens"], result["kl"]["tuned_lens"]
    print(f"{args.out}: held-out KL to the last layer, nats per token over "
          f"{result['heldout']['positions']} positions")
    print(f"{'layer':>5}  {'logit lens':>10}  {'tuned lens':>10}")
    for layer in map(str, result["layers"]):
        print(f"{layer:>5}  {logit[layer]:>10.4f}  {tuned[layer]:>10.4f}")
    return 0
