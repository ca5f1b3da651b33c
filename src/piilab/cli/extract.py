"""`piilab extract`: find the PII in a text with a (tuned) model; JSON out, or the text redacted."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

from piilab.cli._args import add_decoding_args, add_free_decoding_arg, decoding_from
from piilab.cli.generate import add_model_args
from piilab.errors import PiilabError
from piilab.models.loading import DEFAULT_MODEL
from piilab.models.shipped import SHIPPED_DEFAULT
from piilab.second_look import THRESHOLD as SECOND_LOOK
from piilab.second_look import checked_threshold, threshold_for

log = logging.getLogger(__name__)

# Chosen on the real-text dev set (docs/evaluation.md, "Model and validators").
DEFAULT_VALIDATORS: tuple[str, ...] = ("extend", "check", "complete")
TEXTS_AT_A_TIME = 256
"""Texts extracted per round: each round's results are written before the next round starts."""


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "extract", help="find PII in a text with a tuned model (JSON, or the text redacted)",
        description="Prompt the model the way its training did, decode, parse the answer and "
                    "place every item in the text. Items the model names that do not occur in "
                    "the text are listed under 'invented' and never placed.")
    add_model_args(parser, default_help=f"{SHIPPED_DEFAULT}, the adapter shipped in piilab; "
                                        f"{DEFAULT_MODEL} when --adapter is given",
                   batch_help="prompts decoded at a time (default 32: piilab.extract.BATCH_SIZE, "
                              "the fastest measured on 2 cores)")
    parser.add_argument("text", nargs="?", help="the text to search")
    parser.add_argument("--input", help="a text file (the whole file is one text), or a .jsonl "
                                        "file with a 'text' (and optional 'id') per line")
    parser.add_argument("--layer", type=int, help="exit layer (default: the last)")
    parser.add_argument("--redact", action="store_true", help="print the text with [LABEL] masks")
    parser.add_argument("--style", help="prompt style (default: the one training used)")
    parser.add_argument("--labels", help="comma-separated label set (default: training's)")
    speed = parser.add_argument_group("speed-ups (the defaults give plain greedy decoding's answers, "
                                      "the merged weights up to float rounding)")
    speed.add_argument("--draft-tokens", type=int, default=4, metavar="K",
                       help="tokens drafted from the text per forward pass and checked by the "
                            "model (prompt-lookup decoding; default 4, 0: off)")
    speed.add_argument("--no-shared-start", action="store_true",
                       help="prefill each prompt whole instead of their common start once per run")
    speed.add_argument("--linear", choices=["exact", "merged", "bfloat16"], default="merged",
                       help="linear layers: merged (default: LoRA merged into float32 copies, one "
                            "product per layer), exact (as loaded), bfloat16 (faster on CPUs with "
                            "avx512_bf16; answers may differ)")
    speed.add_argument("--plain-decoding", action="store_true",
                       help="no speed-ups: plain batched decoding, as before prompt lookup")
    parser.add_argument("--validators", default=",".join(DEFAULT_VALIDATORS), metavar="MODES",
                        help="combine the model with patterns for fixed-shape values: comma-separated "
                             "check (drop an email, phone or URL without its shape), extend (grow a "
                             "cut email or URL), complete (add emails, Luhn card numbers and IBANs "
                             f"the model missed); 'none' for the model alone (default "
                             f"{','.join(DEFAULT_VALIDATORS) or 'none'})")
    parser.add_argument("--second-look", type=float, default=None, metavar="P",
                        help="decode one more line from each way on between items that the model "
                             "gave at least P and the answer did not take (copy-constrained greedy "
                             "decoding only; 0: off; default: the adapter's extract_defaults.json, "
                             f"else {SECOND_LOOK})")
    add_decoding_args(parser, max_new_tokens=128)
    add_free_decoding_arg(parser)
    parser.set_defaults(func=run)


def read_texts(args) -> tuple[list, list[str], bool]:
    """(ids, texts, one JSON line per text?) from the positional TEXT or --input."""
    from piilab.io import iter_jsonl

    if (args.text is None) == (args.input is None):
        raise PiilabError("give a TEXT or --input FILE (one of them)")
    if args.text is not None:
        return [None], [args.text], False
    path = Path(args.input)
    if path.suffix == ".jsonl":
        ids, texts = [], []
        for i, row in enumerate(iter_jsonl(path)):
            if not isinstance(row, dict) or not isinstance(row.get("text"), str):
                raise PiilabError(f"{path}: row {i + 1} has no string field 'text'")
            ids.append(row.get("id", i))
            texts.append(row["text"])
        return ids, texts, True
    try:
        return [None], [path.read_text(encoding="utf-8")], False
    except OSError as err:
        raise PiilabError(f"{path}: cannot read ({err.strerror})") from None
    except UnicodeDecodeError:
        raise PiilabError(f"{path}: not UTF-8 text (a binary file?)") from None


def validators_from(value: str) -> tuple[str, ...]:
    return () if value.strip() == "none" else tuple(m.strip() for m in value.split(",") if m.strip())


def run(args) -> int:
    from dataclasses import replace
    from functools import partial

    from piilab.extract import BATCH_SIZE, SpeedUps, extract, prompt_settings
    from piilab.models import load_model, trained_folder
    from piilab.models.prompts import format_for

    ids, texts, lines = read_texts(args)
    if args.second_look is not None:
        checked_threshold(args.second_look, "--second-look")
    if args.draft_tokens < 0:
        raise PiilabError(f"--draft-tokens must be 0 or more, not {args.draft_tokens}")
    speedups = SpeedUps.off() if args.plain_decoding else SpeedUps(
        draft_tokens=args.draft_tokens, share_prefix=not args.no_shared_start, linear=args.linear)
    decoding = decoding_from(args)
    if args.model is None:
        args.model = DEFAULT_MODEL if args.adapter else SHIPPED_DEFAULT
    model, tokenizer = load_model(args.model, args.adapter, device=args.device, dtype=args.dtype,
                                  trust_remote_code=args.trust_remote_code)
    trained_in = trained_folder(args.model, args.adapter)
    settings = prompt_settings(trained_in)
    if args.second_look is None:
        args.second_look, source = threshold_for(trained_in)
        log.info("second look at %s (%s)", args.second_look, source)
    if args.style:
        settings = replace(settings, style=args.style, source="--style")
    if args.labels:
        settings = replace(settings, labels=tuple(x.strip() for x in args.labels.split(",") if x.strip()))
    extract_round = partial(extract, model, tokenizer, layer=args.layer, settings=settings,
                            prompt_format=format_for(tokenizer, trained_in), lens=args.lens,
                            decoding=decoding, speedups=speedups,
                            batch_size=BATCH_SIZE if args.batch_size is None else args.batch_size,
                            constrain=not args.free_decoding, validators=validators_from(args.validators),
                            second_look=args.second_look)
    for start in range(0, len(texts), TEXTS_AT_A_TIME):
        round_ = slice(start, start + TEXTS_AT_A_TIME)
        for id_, result in zip(ids[round_], extract_round(texts[round_])):
            sys.stdout.write(render(id_, result, args.redact, lines) + "\n")
        sys.stdout.flush()
    return 0


def render(id_, result, redact: bool, lines: bool) -> str:
    """One result as printed: a JSON line per text of a .jsonl input, else the redacted text or
    indented JSON."""
    if redact:
        return json.dumps({"id": id_, "redacted": result.redacted()}, ensure_ascii=False) if lines \
            else result.redacted()
    body = {"id": id_, **result.to_dict()} if lines else result.to_dict()
    return json.dumps(body, ensure_ascii=False, indent=None if lines else 2)
