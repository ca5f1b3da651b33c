"""`piilab generate`: decode prompts, exactly as given, from one or more exit layers."""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
from dataclasses import asdict

from piilab.cli._args import (
    add_decoding_args,
    add_runtime_args,
    decoding_from,
    int_list,
)
from piilab.errors import PiilabError

log = logging.getLogger(__name__)


BATCH_SIZE = 8


def add_model_args(parser: argparse.ArgumentParser, default_help: str | None = None,
                   batch_help: str | None = None) -> None:
    """--model, --adapter, --lens, --batch-size and the runtime flags. With `batch_help`,
    --batch-size defaults to None: the command's own default, which the help names."""
    from piilab.models import DEFAULT_MODEL

    parser.add_argument("--model", default=None if default_help else DEFAULT_MODEL,
                        help="embedded name, shipped adapter, model folder, adapter folder or hub id "
                             f"(default {default_help or DEFAULT_MODEL})")
    parser.add_argument("--adapter", help="a PEFT adapter folder to apply to --model")
    parser.add_argument("--lens", default="norm",
                        help="norm: final norm + unembedding (default); raw: unembedding only, "
                             "as the original experiment; tuned:LENS_DIR: a trained tuned lens")
    parser.add_argument("--batch-size", type=int, default=None if batch_help else BATCH_SIZE,
                        help=batch_help or f"prompts per batch (default {BATCH_SIZE})")
    add_runtime_args(parser)


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "generate", help="decode prompts from one or more exit layers",
        description="Decode each prompt exactly as given from exit layers L (decoder layers 1..L, "
                    "then the lens). Output: one JSON line per prompt and layer: id, layer, output.")
    add_model_args(parser)
    parser.add_argument("--layers", type=int_list, help="exit layers, e.g. 8,16,24,30 (default: the last)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--input", help="JSONL file, one {\"prompt\": ..., \"id\": ...} per line "
                                        "(a row without a prompt that can be decoded is skipped, "
                                        "counted and named by line)")
    source.add_argument("--prompt", help="one prompt")
    parser.add_argument("--output", "-o",
                        help="output JSONL (default: standard output), written 256 prompts at a time; "
                             "a rerun with the same settings decodes only the prompts without rows "
                             "there, or whose rows were made from a prompt edited since")
    parser.add_argument("--speculative", type=int, metavar="E",
                        help="decode at full depth (greedy), drafting with exit layer E and "
                             "verifying with the whole model (self-speculative decoding; one "
                             "prompt at a time; --lens is the draft's lens)")
    parser.add_argument("--draft-tokens", type=int, metavar="K",
                        help="with --speculative: tokens drafted per round at most (default 4)")
    parser.add_argument("--draft-precision", choices=["auto", "exact", "bfloat16"],
                        help="with --speculative: the draft head's precision; auto (default) drafts "
                             "with a bfloat16 copy of a float32 head where the hardware has native "
                             "bf16 (changes acceptance only, never the output)")
    add_decoding_args(parser)
    # None until given, so --speculative (one prompt at a time) can refuse an explicit batch size
    parser.set_defaults(func=run, batch_size=None)


def drop_undecodable(rows, model, tokenizer, decoding) -> list[list[int]]:
    """Skip the rows whose prompt cannot be decoded (blank, or too long for the context window
    with --max-new-tokens), before the first round, so a long run does not stop in the middle;
    the kept rows' token ids, so that decoding does not tokenize them again."""
    from piilab.layers.encoding import encode_prompt
    from piilab.models import arch

    window, kept, encoded = arch.context_window(model), [], []
    for i, prompt in enumerate(rows.values):
        try:
            encoded.append(encode_prompt(tokenizer, prompt, context_window=window,
                                         max_new_tokens=decoding.max_new_tokens))
            kept.append(i)
        except PiilabError as err:
            rows.skip(rows.lines[i], f"the prompt {err}")
    rows.keep(kept)
    if not rows.values:
        raise PiilabError(f"{rows.path}: no row with a prompt that can be decoded")
    return encoded


PROMPTS_AT_A_TIME = 256
"""Prompts decoded per round: each round's rows are written before the next round starts."""


def run(args) -> int:
    from piilab.cli._output import held

    with held(args.output):
        return decode(args)


def decode(args) -> int:
    """`piilab generate`, its --output (if any) held by this process alone."""
    from pathlib import Path

    from piilab.cli._input import string_rows, text_argument
    from piilab.cli._output import model_files, resumed, unique_ids, where
    from piilab.io import DIGEST, append_lines, id_key, row_digest
    from piilab.layers.decode import generate
    from piilab.models import arch, load_model

    decoding = decoding_from(args)
    for flag in ("draft_tokens", "draft_precision"):
        if getattr(args, flag) is not None and args.speculative is None:
            raise PiilabError(f"--{flag.replace('_', '-')} needs --speculative E")
    if args.batch_size is not None and args.speculative is not None:
        raise PiilabError("--batch-size does not apply to --speculative, which decodes one prompt at a time")
    read = string_rows(args.input, "prompt") if args.input else None
    ids, prompts = (read.ids, read.values) if read else ([0], [text_argument(args.prompt, "--prompt")])
    if args.output:  # before loading and decoding (run() has checked the file itself)
        unique_ids(args.input or "--prompt", ids)
    model, tokenizer = load_model(args.model, args.adapter, device=args.device, dtype=args.dtype,
                                  trust_remote_code=args.trust_remote_code)
    encoded = prompts  # what decoding takes: the prompts, or their token ids once checked
    if read:
        encoded = drop_undecodable(read, model, tokenizer, decoding)
        ids, prompts = read.ids, read.values
        read.report("to decode")
    layers = sorted(set(args.layers or [arch.num_layers(model)]))
    done: set = set()
    digests = {id_key(id_): row_digest(prompt) for id_, prompt in zip(ids, prompts)} if args.output else {}
    if args.output:  # what decides the rows (self-speculation gives full-depth greedy's own)
        prompt = args.prompt and hashlib.sha256(args.prompt.encode()).hexdigest()  # not the text
        identity = {"input": where(args.input), "prompt": prompt, "model": where(args.model),
                    "adapter": where(args.adapter), "layers": layers, "lens": args.lens,
                    "model_files": model_files(args.model, args.adapter, args.lens),
                    "dtype": args.dtype, "decoding": asdict(decoding)}
        done = resumed(Path(args.output), identity, "generate", digests,
                       key=lambda row: (id_key(row["id"]), row["layer"]))
    todo = [i for i, id_ in enumerate(ids) if any((id_key(id_), layer) not in done for layer in layers)]
    if args.output:
        log.info("%s: %d of %d prompts there already, %d to decode", args.output,
                 len(ids) - len(todo), len(ids), len(todo))
    written = 0
    for start in range(0, len(todo), PROMPTS_AT_A_TIME):
        round_ = todo[start:start + PROMPTS_AT_A_TIME]
        these_ids, these = [ids[i] for i in round_], [encoded[i] for i in round_]
        if args.speculative is not None:
            rows = speculate(args, model, tokenizer, these_ids, these, decoding)
        else:
            result = generate(model, tokenizer, these, layers, lens=args.lens, decoding=decoding,
                              batch_size=BATCH_SIZE if args.batch_size is None else args.batch_size,
                              return_details=True, seed_numbers=round_)  # places in the input
            rows = [{"id": id_, "layer": layer, "output": result.texts[layer][i]}
                    for i, id_ in enumerate(these_ids) for layer in result.layers]
        if args.output:
            rows = [{**row, DIGEST: digests[id_key(row["id"])]} for row in rows]
        lines = [json.dumps(row, ensure_ascii=False) for row in rows
                 if (id_key(row["id"]), row["layer"]) not in done]  # a layer a killed run wrote
        if args.output:
            append_lines(args.output, lines)  # a round at a time, flushed: a rerun resumes after it
            written += len(lines)
        else:
            sys.stdout.write("".join(line + "\n" for line in lines))
            sys.stdout.flush()
    if args.output:
        log.info("wrote %d outputs to %s%s", written, args.output,
                 f"; {read.skipped} input row(s) skipped" if read and read.skipped else "")
    return 0


def speculate(args, model, tokenizer, ids: list, prompts: list[str], decoding) -> list[dict]:
    """Output rows of full-depth decoding by self-speculation (the summary line is logged)."""
    from piilab.layers.speculative import speculative_generate
    from piilab.models import arch

    total = arch.num_layers(model)
    if args.layers and set(args.layers) != {total}:
        raise PiilabError(f"--speculative decodes at full depth (layer {total}): drop --layers or "
                          f"give only the last layer, {total}")
    draft_tokens = 4 if args.draft_tokens is None else args.draft_tokens
    result = speculative_generate(model, tokenizer, prompts, args.speculative,
                                  draft_tokens=draft_tokens, lens=args.lens,
                                  draft_precision=args.draft_precision or "auto", decoding=decoding)
    return [{"id": id_, "layer": total, "output": text} for id_, text in zip(ids, result.texts)]
