"""`piilab eval`: models × layers × test set → outputs, scores and results.json."""

from __future__ import annotations

import argparse

from piilab.cli._args import (
    add_decoding_args,
    add_free_decoding_arg,
    add_runtime_args,
    decoding_from_args,
    int_list,
)
from piilab.eval import metrics
from piilab.eval.config import EvalConfig, ModelUnderTest
from piilab.eval.run import evaluate
from piilab.shapes import EXTRACT_MODES, checked_modes


class _ModelAction(argparse.Action):
    """`--model A --adapter X --model-lens L --model-layers 8,16 --model B`: --adapter,
    --model-lens and --model-layers belong to the --model before them."""

    def __call__(self, parser, namespace, value, option_string=None):
        models = getattr(namespace, "models", None) or []
        if option_string == "--model":
            models.append({"spec": value, "adapter": None, "lens": None, "layers": None})
            namespace.models = models
            return
        key = option_string.removeprefix("--model-").removeprefix("--")  # adapter, lens, layers
        if not models or models[-1][key] is not None:
            raise argparse.ArgumentError(self, f"each {option_string} must follow its own --model")
        if key == "layers":
            try:
                value = int_list(value)
            except argparse.ArgumentTypeError as error:
                raise argparse.ArgumentError(self, str(error)) from None
        models[-1][key] = value


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "eval", help="decode models at exit layers over a test set and score the outputs"
    )
    parser.add_argument("--model", action=_ModelAction, dest="models", required=True,
                        help="model spec; repeat to compare models (vanilla and tuned)")
    parser.add_argument("--adapter", action=_ModelAction, dest="models",
                        help="PEFT adapter (training run folder) for the --model before it")
    parser.add_argument("--model-lens", action=_ModelAction, dest="models",
                        help="lens for the --model before it only (e.g. tuned:LENS_DIR); list a "
                        "model twice to compare two lenses")
    parser.add_argument("--model-layers", action=_ModelAction, dest="models",
                        help="exit layers for the --model before it only, e.g. 5,9,14,18 beside "
                        "a deeper model's --layers 8,16,24,30")
    parser.add_argument("--layers", type=int_list, help="exit layers, e.g. 8,16,24,30 "
                        "(default: each model's last layer), for every model without "
                        "--model-layers")
    parser.add_argument("--lens", default="norm", help="norm, raw, or tuned:LENS_DIR, for every "
                        "model without a --model-lens")
    parser.add_argument("--data", required=True, help="dataset folder (uses test.jsonl) or JSONL")
    parser.add_argument("--out", required=True, help="results folder")
    parser.add_argument("--limit", type=int, help="only the first N test records")
    parser.add_argument("--metrics", default=",".join(metrics.METRICS),
                        help=f"comma-separated subset of {','.join(metrics.METRICS)}")
    parser.add_argument("--bertscore-model", help="BERTScore encoder name or folder "
                        "(default: the packaged all-MiniLM-L6-v2)")
    parser.add_argument("--bleu", default="sacrebleu", choices=["sacrebleu", "nltk"])
    parser.add_argument("--bootstrap", type=int, default=0, help="resamples for 95%% intervals")
    parser.add_argument("--batch-size", type=int, default=8)
    found = parser.add_argument_group(
        "as extract finds PII (each PII record's output is what `piilab extract` reports for its "
        "text; default: the model's greedy answer as written)")
    found.add_argument("--second-look", type=threshold_or_auto, default=0.0, metavar="P",
                       help="extract's second look at threshold P; auto: each model's own, as "
                            "extract takes it (its adapter's extract_defaults.json, else 0.05); "
                            "0: off")
    found.add_argument("--validators", default="none", metavar="MODES",
                       help="extract's validators, comma-separated check, extend, complete, "
                            f"phones, mailbox, lists, postal (none: off; extract's own: {','.join(EXTRACT_MODES)}; "
                            "+postal: extract's own and postal)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace results made with other arguments in --out")
    add_decoding_args(parser)
    add_free_decoding_arg(parser)
    add_runtime_args(parser)
    parser.set_defaults(func=run)


def threshold_or_auto(value: str) -> float | str:
    """--second-look: a number, or "auto" (each model's own threshold)."""
    if value == "auto":
        return value
    try:
        return float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a probability or auto, not {value!r}") from None


def run(args) -> int:
    config = EvalConfig(
        models=[ModelUnderTest(**m) for m in args.models], data=args.data, out=args.out,
        layers=args.layers, lens=args.lens, limit=args.limit,
        metrics=tuple(m for m in args.metrics.split(",") if m), bertscore_model=args.bertscore_model,
        bleu=args.bleu, bootstrap=args.bootstrap, seed=args.seed,
        decoding=decoding_from_args(args), constrain=not args.free_decoding,
        second_look=args.second_look, validators=checked_modes(args.validators),
        batch_size=args.batch_size,
        device=args.device, dtype=args.dtype,
    )
    results = evaluate(config, overwrite=args.overwrite)
    if results:
        print(f"{args.out}/results.json: {len(results['runs'])} runs")
    return 0
