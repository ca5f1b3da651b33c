"""`piilab eval --second-look P --validators MODES`: a PII record's output is what `piilab
extract` reports for its text (copy-constrained greedy decoding, the second look, the
validators), written in the answer format, so that the scores are those of what extract finds.

Without these options eval scores the model's greedy answer as it is written. With them, each PII
record's text is searched by piilab.extract.extract at each exit layer, prompted with the test
set's settings; those must give back the record's own prompt (checked before anything runs: a
test set whose prompts extract would not write is refused, naming the record). The items found,
in order of their first place in the text, become the output; items the model invented (found
nowhere in the text) or the validators rejected are left out, as extract does not report them as
found. Instruction rows (spans null) are decoded as without the options.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from piilab.data.answer import format_answer
from piilab.errors import PiilabError
from piilab.extract import Extraction, extract
from piilab.pii_prompt import PromptSettings, data_settings


def settings_for(data: str | Path, labels: Sequence[str]) -> PromptSettings:
    """The prompt settings of the test set (its card's style and windows) with eval's labels."""
    return replace(data_settings(Path(data)), labels=tuple(labels))


def threshold_of(second_look: float | str, trained_folder: str | Path | None) -> float:
    """The second look's threshold for one model: the one given, or with "auto" the model's own
    (its adapter's extract_defaults.json, else piilab's default), as `piilab extract` takes it."""
    from piilab.second_look import threshold_for

    return threshold_for(trained_folder)[0] if second_look == "auto" else float(second_look)


def check_prompts(records: list[dict], settings: PromptSettings, path: str | Path) -> None:
    """Refuse a PII record whose prompt is not the one extract writes for its text."""
    from piilab.data.instruct import get_style

    style = get_style(settings.style)
    for record in records:
        if record.get("spans") is None:
            continue
        if record.get("prompt") != style.pii(record.get("text") or "", settings.labels):
            raise PiilabError(
                f"{path}: record {record.get('id')!r}: its prompt is not the one `piilab extract` "
                f"writes for its text (style {settings.style!r}, labels {','.join(settings.labels)}); "
                "--second-look and --validators score what extract finds, and extract prompts from "
                "the text: drop them to score the records' own prompts")


def found_answer(found: Extraction) -> str:
    """The items extract placed in the text, as an answer: in order of their first place, each
    value on one line (its whitespace collapsed, as the answer format writes a value)."""
    items = sorted(found.items, key=lambda item: min(span["start"] for span in item["spans"]))
    return format_answer([(" ".join(item["value"].split()), item["label"]) for item in items])


ROUND = 128
"""PII records searched per extract call; their rows are written before the next round."""


def decode(model, tokenizer, records: list[dict], layers: Sequence[int], emit, *,
           settings: PromptSettings, second_look: float, validators: Sequence[str],
           **decoding) -> None:
    """Search each record's text at every exit layer, a round at a time, with the model prepared
    once (extract's merged linear layers and shared start), and hand each round's outputs to
    `emit(layer, records, outputs, seconds)`. `decoding` is extract's (prompt_format, lens,
    decoding, batch_size, constrain)."""
    from piilab.extract import SpeedUps, prepared

    with prepared(model, SpeedUps()):
        for start in range(0, len(records), ROUND):
            round_ = records[start:start + ROUND]
            for layer in layers:
                began = time.perf_counter()
                found = extract(model, tokenizer, [record["text"] for record in round_],
                                layer=layer, settings=settings, second_look=second_look,
                                validators=validators, progress=False, **decoding)
                emit(layer, round_, [found_answer(one) for one in found], time.perf_counter() - began)
