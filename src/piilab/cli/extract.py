"""`piilab extract`: find the PII in a text with a (tuned) model; JSON out, or the text redacted."""

from __future__ import annotations

import json
import logging
import sys
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

from piilab.cli._args import add_decoding_args, add_free_decoding_arg, decoding_from
from piilab.cli._input import string_rows, text_argument
from piilab.cli._output import model_files, resumed, unique_ids, where
from piilab.cli.generate import add_model_args
from piilab.errors import PiilabError
from piilab.io import DIGEST, append_lines, id_key, row_digest
from piilab.models.loading import DEFAULT_MODEL
from piilab.models.shipped import SHIPPED_DEFAULT
from piilab.second_look import THRESHOLD as SECOND_LOOK
from piilab.second_look import checked_threshold, threshold_for
from piilab.shapes import EXTRACT_MODES, checked_modes

log = logging.getLogger(__name__)

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
    parser.add_argument("--input", help="a text file (the whole file is one text), a .jsonl file "
                                        "with a 'text' (and optional 'id') per line, or FORMAT:PATH, "
                                        "a data set in a format piilab reads (kaggle, ai4privacy, "
                                        "presidio, conll, spans): its documents' texts, by id")
    parser.add_argument("--output", "-o", metavar="FILE",
                        help="write a .jsonl or FORMAT:PATH --input's results here (one JSON line "
                             f"per row, a round of {TEXTS_AT_A_TIME} texts at a time) instead of "
                             "standard output; a rerun with the same settings searches only the "
                             "texts without a row there, or whose row was made from a text edited "
                             "since)")
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
    parser.add_argument("--validators", default=",".join(EXTRACT_MODES), metavar="MODES",
                        help="combine the model with patterns for fixed-shape values: comma-separated "
                             "check (drop an item without its label's shape), extend (grow a "
                             "cut email or URL), complete (add emails, card numbers, IBANs and "
                             "national numbers with valid check digits, labelled phone and identity "
                             "numbers and bank statements' accounts the model missed), phones (add phone "
                             "numbers in North America's or a '+' code's shape; not a default), "
                             "mailbox (add the name in 'Name <email>', or beside its email in a table row), "
                             "lists (add the lines a list of people skipped), postal (add address blocks "
                             "and lines no organisation heads; not a default); '+postal': the "
                             "defaults and postal; 'none' for the model alone "
                             f"(default {','.join(EXTRACT_MODES) or 'none'})")
    parser.add_argument("--second-look", type=float, default=None, metavar="P",
                        help="decode one more line from each way on between items that the model "
                             "gave at least P and the answer did not take (copy-constrained greedy "
                             "decoding only; 0: off; default: the adapter's extract_defaults.json, "
                             f"else {SECOND_LOOK})")
    add_decoding_args(parser, max_new_tokens=128)
    add_free_decoding_arg(parser)
    parser.set_defaults(func=run)


@dataclass
class Texts:
    """What to search: each text's id (None for a lone text), one JSON line per text or not, and
    how many rows of a .jsonl file were skipped (each named in a warning)."""

    ids: list
    texts: list[str]
    lines: bool
    skipped: int = 0


def read_texts(args) -> Texts:
    """The positional TEXT, or --input's: a .jsonl file's rows (a row that is not a JSON object
    with a string 'text' is skipped and counted; its content is never logged), else the whole
    file as one text."""
    if (args.text is None) == (args.input is None):
        raise PiilabError("give a TEXT or --input FILE (one of them)")
    if args.text is not None:
        return Texts([None], [text_argument(args.text, "TEXT")], False)
    source = dataset(args.input)
    if source:
        return read_dataset_texts(source)
    path = Path(args.input)
    if path.suffix == ".jsonl":
        return read_jsonl_texts(path)
    try:  # as it is: offsets count its characters, "\r\n" included; a BOM is not text
        text = path.read_bytes().decode("utf-8-sig")
    except OSError as err:
        raise PiilabError(f"{path}: cannot read ({err.strerror})") from None
    except UnicodeDecodeError:
        raise PiilabError(f"{path}: not UTF-8 text (a binary file?)") from None
    if not text.strip():
        raise PiilabError(f"{path}: the file is empty (or only whitespace)")
    return Texts([None], [text], False)


def read_jsonl_texts(path: Path) -> Texts:
    """A .jsonl file's texts with their ids; bad rows skipped, counted and named by line."""
    rows = string_rows(path, "text")
    rows.report("to search")
    return Texts(rows.ids, rows.values, True, rows.skipped)


def dataset(value: str | None):
    """--input as a data set (`FORMAT:PATH`, piilab.data.sources.SourceSpec); None: a file."""
    from piilab.data.sources import SourceSpec

    return SourceSpec.named(value) if value else None


def read_dataset_texts(spec) -> Texts:
    """The texts of a data set's documents, with their ids: what its reader skips (bad records,
    named by file and record, never by content) and blank texts are counted, not searched."""
    from piilab.data.sources import read_documents

    tallies, ids, texts = {}, [], []
    for tally, doc in read_documents(spec, tallies):
        if doc.text.strip():
            ids.append(doc.id)
            texts.append(doc.text)
        else:
            tally.skip("empty text", doc.id)
    skipped = sum(sum(tally.skipped.values()) for tally in tallies.values())
    if skipped:
        log.warning("%s: %d record(s) skipped (%s), %d to search", spec.path, skipped,
                    ", ".join(t.left_out() for t in tallies.values() if t.skipped), len(texts))
    if not texts:
        raise PiilabError(f"{spec.path}: no text to search in its {spec.format} records")
    return Texts(ids, texts, True, skipped)


def run(args) -> int:
    from piilab.cli._output import held

    if args.output and not (args.input or "").endswith(".jsonl") and not dataset(args.input):
        raise PiilabError("--output resumes the rows of a .jsonl or FORMAT:PATH --input: give "
                          "--input FILE.jsonl or FORMAT:PATH, or redirect standard output")
    found = read_texts(args)  # a bad input is refused before the output's lock file is made
    with held(args.output):
        return search(args, found)


def search(args, found: Texts) -> int:
    """`piilab extract` on the texts `found`, its --output (if any) held by this process alone."""
    from dataclasses import replace

    from piilab.extract import BATCH_SIZE, SpeedUps
    from piilab.extractor import Extractor
    from piilab.models import load_model, trained_folder
    from piilab.models.prompts import format_for
    from piilab.pii_prompt import prompt_settings

    if args.second_look is not None:
        checked_threshold(args.second_look, "--second-look")
    if args.draft_tokens < 0:
        raise PiilabError(f"--draft-tokens must be 0 or more, not {args.draft_tokens}")
    labels = None if args.labels is None else tuple(x.strip() for x in args.labels.split(",") if x.strip())
    if labels == ():
        raise PiilabError(f"--labels {args.labels!r}: the label set is empty")
    speedups = SpeedUps.off() if args.plain_decoding else SpeedUps(
        draft_tokens=args.draft_tokens, share_prefix=not args.no_shared_start, linear=args.linear)
    decoding = decoding_from(args)
    if args.model is None:
        args.model = DEFAULT_MODEL if args.adapter else SHIPPED_DEFAULT
    trained_in = trained_folder(args.model, args.adapter)
    settings = prompt_settings(trained_in)
    if args.second_look is None:
        args.second_look, source = threshold_for(trained_in)
        log.info("second look at %s (%s)", args.second_look, source)
    if args.style:
        settings = replace(settings, style=args.style, source="--style")
    if labels:
        settings = replace(settings, labels=labels)
    validators = checked_modes(args.validators)

    todo, digests = list(range(len(found.texts))), {}
    args.layer, last = exit_layer(args)
    if args.output:
        unique_ids(args.input, found.ids)
        digests = {id_key(id_): row_digest(text) for id_, text in zip(found.ids, found.texts)}
        done = resumed(Path(args.output), output_identity(args, settings, decoding, speedups, validators),
                       "extract", digests,
                       # before the thirteenth session the last layer was written as null
                       earlier={"layer": None} if args.layer == last else {})
        todo = [i for i in todo if id_key(found.ids[i]) not in done]
        log.info("%s: %d of %d texts there already, %d to search", args.output,
                 len(found.texts) - len(todo), len(found.texts), len(todo))
        if not todo:
            return 0
    model, tokenizer = load_model(args.model, args.adapter, device=args.device, dtype=args.dtype,
                                  trust_remote_code=args.trust_remote_code)
    finder = Extractor(model, tokenizer, settings, format_for(tokenizer, trained_in),
                       second_look=args.second_look, validators=validators, layer=args.layer,
                       lens=args.lens, decoding=decoding, speedups=speedups,
                       constrain=not args.free_decoding, progress=True,
                       batch_size=BATCH_SIZE if args.batch_size is None else args.batch_size)
    advice = linear_advice(speedups.linear, next(model.parameters()).device.type)
    if advice:
        log.log(*advice)
    tally = Counter()  # items by who found them, and the model's items `check` dropped
    with finder.prepared():  # the linear copies and the shared start once, not per round
        for start in range(0, len(todo), TEXTS_AT_A_TIME):
            round_ = todo[start:start + TEXTS_AT_A_TIME]
            results = finder([found.texts[i] for i in round_])
            tally.update(origins(results))
            lines = [render(found.ids[i], result, args.redact, found.lines,
                            digest=digests.get(id_key(found.ids[i])))
                     for i, result in zip(round_, results)]
            if args.output:
                append_lines(args.output, lines)  # a round at a time, flushed: a rerun resumes after it
            else:
                sys.stdout.write("".join(line if line.endswith("\n") else line + "\n" for line in lines))
                sys.stdout.flush()
    if args.output:
        log.info("%s: %d texts searched and written%s", args.output, len(todo),
                 f"; {found.skipped} input row(s) skipped" if found.skipped else "")
    if todo:
        log.info("%s", items_summary(tally))
    return 0


def origins(results) -> Counter:
    """How many items each finder gave (the model, its second look, the validators' patterns),
    and how many of the model's items the validators dropped: counts only, no values."""
    tally = Counter(item.get("found_by", "model") for result in results for item in result.items)
    tally["dropped by check"] += sum(len(result.rejected) for result in results)
    return tally


def items_summary(tally: Counter) -> str:
    """'items: 1,234 (model 1,000, pattern 184, second look 50); 20 of the model's dropped by
    the validators'."""
    found = {name: n for name, n in tally.items() if name != "dropped by check" and n}
    parts = ", ".join(f"{name} {n:,}" for name, n in sorted(found.items(), key=lambda kv: -kv[1]))
    return (f"items: {sum(found.values()):,}" + (f" ({parts})" if parts else "")
            + f"; {tally['dropped by check']:,} of the model's dropped by the validators")


def linear_advice(linear: str, device_type: str) -> tuple[int, str] | None:
    """What to say about --linear on this device: bf16 copies are much faster on a CPU that
    multiplies bf16 natively, and slower than float32 on one that emulates it."""
    from piilab.runtime import cpu_supports_bf16

    if device_type != "cpu" or linear not in ("merged", "bfloat16"):
        return None
    native = cpu_supports_bf16()
    if linear == "merged" and native:
        return logging.INFO, ("this CPU multiplies bf16 natively: --linear bfloat16 extracts about "
                              "1.8-2x faster, with the float32 answers on 94-99% of texts measured "
                              "(docs/layers.md, \"Extraction speed\")")
    if linear == "bfloat16" and not native:
        return logging.WARNING, ("--linear bfloat16 on a CPU without native bf16 (avx512_bf16, "
                                 "amx_bf16): emulated, slower than the default merged float32")
    return None


def exit_layer(args) -> tuple[int, int]:
    """--layer as a number (default: the model's last, so the two spellings resume one --output),
    checked against the model's config before its weights load, as --lens is; and the last
    layer's number."""
    from piilab.layers.lenses import check_lens
    from piilab.models import model_config

    config = model_config(args.model, args.trust_remote_code)
    check_lens(args.lens, config, "--lens")  # a tuned lens for another model, before the load
    total = config.num_hidden_layers
    layer = total if args.layer is None else args.layer
    if not 1 <= layer <= total:
        raise PiilabError(f"exit layer {layer} is out of range: the model has layers 1..{total}")
    return layer, total


def output_identity(args, settings, decoding, speedups, validators) -> dict:
    """What decides --output's rows: a resumed run must have the same."""
    source = dataset(args.input)
    return {"input": source.key() if source else where(args.input),
            "model": where(args.model), "adapter": where(args.adapter),
            "model_files": model_files(args.model, args.adapter, args.lens),
            "layer": args.layer, "lens": args.lens, "dtype": args.dtype,
            "bfloat16_blocks": speedups.linear == "bfloat16",
            "prompt": {k: v for k, v in asdict(settings).items() if k != "source"},
            "decoding": asdict(decoding), "free_decoding": args.free_decoding,
            "validators": list(validators), "second_look": args.second_look,
            "redact": args.redact}


def render(id_, result, redact: bool, lines: bool, digest: str | None = None) -> str:
    """One result as printed: a JSON line per text of a .jsonl input (with its text's digest
    where --output resumes it), else the redacted text or indented JSON."""
    tail = {DIGEST: digest} if digest else {}
    if redact:
        return json.dumps({"id": id_, "redacted": result.redacted(), **tail}, ensure_ascii=False) \
            if lines else result.redacted()
    body = {"id": id_, **result.to_dict(), **tail} if lines else result.to_dict()
    return json.dumps(body, ensure_ascii=False, indent=None if lines else 2)
