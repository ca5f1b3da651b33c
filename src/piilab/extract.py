"""Find PII in a user's text with a (tuned) model: prompt as training did, decode, parse, place.

The prompt is built the way training built it (piilab.pii_prompt): the prompt style, label set
and windows of the adapter's training data (copied from its card into prompt_settings.json by
training), rendered with the prompt format saved beside the adapter.
Texts longer than training's window size are cut into the same overlapping windows; the answers
of all windows are merged; a window whose answer `max_new_tokens` cut is halved and searched
again (piilab.halving). Answers are copy-constrained while decoding (layers/constrain.py)
unless asked otherwise. Every item the model names is then looked up in the text: each place
it occurs becomes a start/end; a value that occurs nowhere was invented by the model, and an item
whose label is outside the label set is off the task: both are reported apart, never placed.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

from piilab import second_look as look
from piilab.answer_drafts import LabelGuess, answer_seeds
from piilab.data.answer import parse_answer
from piilab.data.validators import is_mark
from piilab.errors import PiilabError
from piilab.halving import cut_rows, search_windows
from piilab.models.arch import model_lock, one_at_a_time
from piilab.models.prompts import PromptFormat, format_for
from piilab.pii_prompt import PromptSettings, pii_prompt, template_start, text_windows
from piilab.pii_prompt import prompt_settings  # noqa: F401  (imported from here before it moved)

log = logging.getLogger(__name__)

BATCH_SIZE = 32  # prompts decoded at a time: 5.0 texts/s against 4.3 at 16 (docs/layers.md)


# ---------------------------------------------------------------- placing answers in the text


def _bounded(body: str, value: str) -> str:
    """`body` (a pattern for `value`) allowed only where it starts and ends a token.

    A value that begins or ends with a word character must not touch another one there ("Ann"
    is not in "Annual" or "Hanna"; "555-1234" is not in "1555-12345"); a value that begins or
    ends with punctuation ("@user", "(555) 010") carries its own boundary on that side.
    """
    head = r"(?<!\w)" if _wordish(value[0]) else ""
    tail = r"(?!\w)" if _wordish(value[-1]) else ""
    return head + body + tail


def _wordish(char: str) -> bool:
    """A word character, or a combining mark (part of the letter before it: "e" + U+0301 is "é")."""
    return re.match(r"\w", char) is not None or is_mark(char)


def _whole_letters(text: str, start: int, end: int) -> bool:
    """Whether text[start:end] keeps each letter with its combining marks: \\w matches no mark,
    so the pattern's bounds let "Jose" match "José" written as "Jose" + U+0301."""
    return not (end < len(text) and is_mark(text[end])) and \
        not (start > 0 and is_mark(text[start - 1]) and _wordish(text[start]))


def locate(text: str, value: str) -> list[tuple[int, int]]:
    """Every (start, end) where `value` occurs in `text` as whole tokens.

    Exact matches first; if there are none, matches that differ only in letter case or in
    whitespace (the answer writes an address over two lines on one line). Either way a match
    never starts or ends inside a word (design.md, "Answer format").
    """
    value = value.strip()
    if not value:
        return []
    exact = re.compile(_bounded(re.escape(value), value))
    found = [(m.start(), m.end()) for m in exact.finditer(text) if _whole_letters(text, *m.span())]
    if found:
        return found
    loose = re.compile(_bounded(r"\s+".join(map(re.escape, value.split())), value), re.IGNORECASE)
    return [(m.start(), m.end()) for m in loose.finditer(text) if _whole_letters(text, *m.span())]


@dataclass
class Extraction:
    """The PII a model found in one text."""

    text: str
    layer: int
    answers: list[str]
    """The model's raw answer per window searched: the text's windows, then any halves."""
    items: list[dict[str, Any]] = field(default_factory=list)
    """{value, label, spans: [{start, end}]} for each item that occurs in the text."""
    invented: list[dict[str, str]] = field(default_factory=list)
    """{value, label} for each item that occurs nowhere in the text."""
    outside_labels: list[dict[str, str]] = field(default_factory=list)
    """{value, label} for each item whose label is not in the label set."""
    rejected: list[dict[str, str]] = field(default_factory=list)
    """{value, label} for each model item the validators dropped (its value lacks its label's
    shape; piilab.shapes)."""
    second_look: list[str] = field(default_factory=list)
    """The lines the second look decoded (piilab.second_look); their new items are in `items`,
    marked "found_by": "second look"."""

    def to_dict(self) -> dict[str, Any]:
        return {"layer": self.layer, "items": self.items, "invented": self.invented,
                "outside_labels": self.outside_labels, "rejected": self.rejected,
                "answers": self.answers, "second_look": self.second_look}

    def redacted(self) -> str:
        """The text with every placed item replaced by [LABEL]: of spans that start together the
        longest's label; a span that runs on past one already masked masks the rest with its own."""
        spans = sorted(((s["start"], s["end"], item["label"]) for item in self.items
                        for s in item["spans"]), key=lambda s: (s[0], -(s[1] - s[0])))
        out, at = [], 0
        for start, end, label in spans:
            if end <= at:
                continue  # inside a span already masked
            out += [self.text[at:max(start, at)], f"[{label}]"]
            at = end
        return "".join(out) + self.text[at:]


def place(text: str, items: Sequence[tuple[str, str]]) -> tuple[list[dict], list[dict]]:
    """(placed items with their spans, invented items), each (value, label) once, in answer order."""
    placed, invented, seen = [], [], set()
    for value, label in items:
        if (value, label) in seen:
            continue
        seen.add((value, label))
        spans = locate(text, value)
        if spans:
            placed.append({"value": value, "label": label,
                           "spans": [{"start": s, "end": e} for s, e in spans]})
        else:
            invented.append({"value": value, "label": label})
    return placed, invented


# ---------------------------------------------------------------- the API


@dataclass(frozen=True)
class SpeedUps:
    """How extraction saves time. The defaults give plain greedy decoding's answers: the drafts
    and the shared start exactly, the merged LoRA weights up to float rounding (the same answers
    on every measured text; docs/layers.md, "Extraction speed")."""

    draft_tokens: int = 4
    """Tokens drafted from the text per forward pass (prompt-lookup decoding); 0: none."""
    share_prefix: bool = True
    """Prefill the prompts' common start (template, instruction, labels) once per call."""
    linear: str = "merged"
    """Linear layers: "exact" (as loaded), "merged" (LoRA merged into float32 copies) or
    "bfloat16" (merged bf16 copies; faster where bf16 is native, answers may differ slightly)."""

    @classmethod
    def off(cls) -> "SpeedUps":
        """Today's plain batched decoding (piilab.layers.decode.generate), nothing else."""
        return cls(draft_tokens=0, share_prefix=False, linear="exact")

    @property
    def lookup(self) -> bool:
        """Whether decoding goes through prompt-lookup decoding's engine."""
        return self.draft_tokens > 0 or self.share_prefix

    def __post_init__(self) -> None:
        from piilab.layers.linears import PRECISIONS

        if self.draft_tokens < 0:
            raise PiilabError(f"draft tokens must be 0 or more, not {self.draft_tokens}")
        if self.linear not in PRECISIONS:
            raise PiilabError(f"unknown linear precision {self.linear!r}: use {', '.join(PRECISIONS)}")


PREPARED = "_piilab_prepared"
"""A model attribute while inside `prepared`: [what restores the model, entries not yet left]."""


@contextmanager
def prepared(model, speedups: SpeedUps = SpeedUps()):
    """Within: `extract` calls with these speed-ups reuse what each call would prepare again: the
    linear layers' merged (or bf16) copies and the prompts' shared start, run once per exit layer.
    For a service extracting from a text or a few at a time, where that is much of a call
    (docs/layers.md, "Extraction speed"). The weights are taken as they are on entry.
    Any thread may enter and leave it, and calls inside may come from several, which take turns
    on the model: the first entry prepares the model and the last exit restores it, each waiting
    for a call in flight, so that no call finds the model half prepared."""
    from piilab.layers.linears import linears_swapped
    from piilab.layers.lookup import PREFIXES

    lock = model_lock(model)
    with lock:
        held = getattr(model, PREPARED, None)
        if held is None:
            restore = ExitStack()
            restore.enter_context(linears_swapped(model, speedups.linear))
            setattr(model, PREFIXES, {})
            restore.callback(delattr, model, PREFIXES)
            held = [restore, 0]
            setattr(model, PREPARED, held)
        else:
            with linears_swapped(model, speedups.linear):  # the same copies, or refused
                pass
        held[1] += 1
    try:
        yield model
    finally:
        with lock:
            held[1] -= 1
            if not held[1]:
                delattr(model, PREPARED)
                held[0].close()


def usable_speedups(model, decoding, speedups: SpeedUps) -> tuple[SpeedUps, str | None]:
    """`speedups` as `decoding` and `model` allow them, and why prompt-lookup decoding is off
    where it was asked for and cannot run (None where nothing changed)."""
    from piilab.layers.lookup import lookup_supported

    if not speedups.lookup:
        return speedups, None
    why = ("sampling: prompt-lookup decoding and the shared start are greedy-only" if decoding.sample
           else lookup_supported(model))
    if not why:
        return speedups, None
    return replace(speedups, draft_tokens=0, share_prefix=False), why


@one_at_a_time
def decode_answers(model, tokenizer, prompts: list[str], layer: int, *, lens, decoding,
                   batch_size: int, add_special_tokens: bool, progress: bool,
                   speedups: SpeedUps, rules=None, labels: Sequence[str] = (),
                   notes=None, start: Sequence[int] = ()
                   ) -> tuple[list[str], list[look.Branch], set[int]]:
    """Each prompt's answer from exit `layer`, through the fastest engine that gives it exactly,
    the second look's branches, decoded (none without `notes`), and the prompts whose answers
    `max_new_tokens` cut.

    `rules`, one (text, labels) per prompt, copy-constrains the answers (layers/constrain.py),
    and `notes` collects what decoding saw besides them (layers/constrain.Notes); with a
    threshold, its ways on are decoded on (piilab.second_look): forked from the answers' rows
    by prompt-lookup decoding, prefilled again by plain decoding.
    `labels` (the answers' label set) seeds prompt-lookup's drafts with the answer's own words;
    `start`, the prompts' template's start, is its shared start (the same in every call).
    """
    from piilab.layers.decode import eos_token_ids, generate
    from piilab.layers.linears import linears_swapped
    from piilab.layers.lookup import lookup_generate
    from piilab.runtime import keep_freed_blocks_for_decoding

    lookup = usable_speedups(model, decoding, speedups)[0].lookup
    if next(model.parameters()).device.type == "cpu":
        keep_freed_blocks_for_decoding()
    eos = eos_token_ids(model, tokenizer)
    with linears_swapped(model, speedups.linear):
        if lookup:
            run = lookup_generate(model, tokenizer, prompts, layer=layer, lens=lens,
                                  decoding=decoding, batch_size=batch_size,
                                  draft_tokens=speedups.draft_tokens,
                                  share_prefix=speedups.share_prefix, start=start,
                                  add_special_tokens=add_special_tokens, progress=progress,
                                  answers=rules, seeds=answer_seeds(labels),
                                  guess=LabelGuess(tokenizer, labels), notes=notes,
                                  second_look=True)
            return run.texts, run.branches, cut_rows(tokenizer, run.token_ids, decoding, eos)
        engine = partial(generate, model, tokenizer, layers=[layer], lens=lens,
                         batch_size=batch_size, add_special_tokens=add_special_tokens,
                         progress=progress)
        run = engine(prompts, decoding=decoding, answers=rules, notes=notes, return_details=True)
        answers = run.texts[layer]
        return answers, decode_branches(engine, tokenizer, prompts, rules, answers, notes,
                                        decoding, add_special_tokens), \
            cut_rows(tokenizer, run.token_ids[layer], decoding, eos)


def decode_branches(engine, tokenizer, prompts: list[str], rules, answers: list[str], notes,
                    decoding, add_special_tokens: bool) -> list[look.Branch]:
    """The second look's branches of plain decoding's answers, each prompt and the answer's
    tokens up to and with its way on prefilled (the model's own tokens, as a fork keeps them)
    and decoded to the end of its line."""
    from piilab.layers.constrain import Notes
    from piilab.layers.encoding import encode_prompts

    todo = look.branches(answers, notes) if notes is not None and notes.threshold else []
    if not todo:
        return []
    seen = Notes()
    starts = encode_prompts(tokenizer, [prompts[b.prompt] for b in todo],
                            add_special_tokens=add_special_tokens)
    new = engine([start + list(b.tokens) for start, b in zip(starts, todo)],
                 decoding=replace(decoding, stop=(*decoding.stop, "\n")),
                 answers=[(*rules[b.prompt], b.written) for b in todo], notes=seen)
    for k, (branch, continuation) in enumerate(zip(todo, next(iter(new.values())))):
        branch.continuation, branch.overridden = continuation, k in seen.overridden
    return todo


def extract(
    model,
    tokenizer,
    texts: Iterable[str],
    *,
    layer: int | None = None,
    settings: PromptSettings | None = None,
    prompt_format: PromptFormat | None = None,
    lens: str = "norm",
    decoding=None,
    batch_size: int = BATCH_SIZE,
    progress: bool = True,
    speedups: SpeedUps | None = None,
    constrain: bool = True,
    validators: Sequence[str] | str = (),
    second_look: float = 0.0,
) -> list[Extraction]:
    """Find the PII in each text, decoding from exit `layer` (default: the last).

    `constrain` (default) lets an answer copy only spans of its window and name only labels of
    the set; False decodes free, as the original experiment did. `speedups` (default: drafts,
    the shared start and merged LoRA weights) picks the decoding engine; `SpeedUps.off()` decodes
    with plain batched `generate`.
    `texts` is a list (or any iterable) of strings, one string being one text: `[text]`.
    `validators` (modes of piilab.shapes: extend, check, complete, ...; a tuple, or a string as
    the command line takes them, "extend,check" or "+postal") combine the model's items with
    patterns for values of a fixed shape; none by default here, `piilab extract`'s are chosen on
    the real-text dev set (docs/evaluation.md). `second_look` p > 0 decodes one more line from
    each way on between items that the model gave at least p (greedy, constrained decoding only;
    piilab.second_look); off by default here, `piilab extract`'s p is chosen on the same set.
    """
    from piilab import shapes
    from piilab.data.labels import DEFAULT_LABELS
    from piilab.layers.decode import Decoding
    from piilab.models import arch

    from piilab.second_look import checked_threshold

    if isinstance(texts, str) or not isinstance(texts, Iterable):
        raise PiilabError(f"texts must be a list of strings, not {type(texts).__name__} "
                          "(one text: [text])")
    texts = list(texts)
    validators = shapes.checked_modes(validators, "validators")  # or "extend,check", "+postal"
    second_look = checked_threshold(second_look, "second_look")
    settings = settings or PromptSettings()
    labels = tuple(settings.labels or DEFAULT_LABELS)
    fmt = prompt_format or format_for(tokenizer)
    decoding = decoding or Decoding(max_new_tokens=128)
    speedups = SpeedUps() if speedups is None else speedups
    layer = arch.num_layers(model) if layer is None else layer
    windows = []  # (text number, window)
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise PiilabError(f"text {i} is a {type(text).__name__}, not a string")
        if text.strip():  # else nothing to find: an empty result, and no prompt
            windows += [(i, window) for window in text_windows(text, settings)]
    log.info("extracting PII from %d texts (%d windows) at layer %d, style %s", len(texts),
             len(windows), layer, settings.style)
    if second_look > 0 and (not constrain or decoding.sample):
        log.info("second look not used: it needs greedy, copy-constrained decoding")
        second_look = 0.0
    speedups, why = usable_speedups(model, decoding, speedups)
    if why:  # said once, not again for each halving's search
        log.info("prompt-lookup decoding not used: %s", why)
    search = partial(decode_answers, model, tokenizer, layer=layer, lens=lens, decoding=decoding,
                     batch_size=batch_size, add_special_tokens=fmt.add_special_tokens,
                     progress=progress, speedups=speedups, labels=labels,
                     start=template_start(tokenizer, settings, fmt))
    searched = search_windows(
        search, lambda window: pii_prompt(tokenizer, window, settings, fmt), windows, labels,
        settings.overlap, constrain, second_look, decoding.max_new_tokens)
    results = []
    for i, text in enumerate(texts):
        mine = [window for window in searched if window.owner == i]
        parsed = [(window.depth, parse_answer(window.answer)) for window in mine]
        items = [item for _, found in parsed for item in found]
        placed, invented = place_by_depth(text, parsed, labels)
        placed = without_nested(placed)
        looked = [line for window in mine for line in window.lines]
        placed = second_look_items(text, placed, looked, labels)
        placed, rejected = shapes.on_items(text, placed, validators)
        placed = [item for item in placed if item["label"] in labels]  # patterns' labels too
        outside = [{"value": v, "label": label} for v, label in dict.fromkeys(items)
                   if label not in labels]
        if outside:
            log.warning("%d items named a label outside the label set; reported, not placed",
                        len(outside))
        results.append(Extraction(text, layer, [window.answer for window in mine], placed,
                                  invented, outside, rejected, looked))
    return results


def without_nested(placed: list[dict]) -> list[dict]:
    """`placed` without the spans that lie inside a longer span of the same label: a first name
    the answer also names on its own is found inside the full name too, and a value a window's
    edge cut inside the whole value. Such a span masks nothing more and is a wrong span of its
    own; the scorer's rule (span_scores.drop_nested), label by label. An item left with no span
    is dropped (its text is inside another item's)."""
    from piilab.eval.span_scores import SpanPred, drop_nested

    spans = [SpanPred(s["start"], s["end"], item["label"]) for item in placed for s in item["spans"]]
    outer = {span for label in {span.label for span in spans}
             for span in drop_nested(span for span in spans if span.label == label)}
    kept = []
    for item in placed:
        mine = [s for s in item["spans"] if SpanPred(s["start"], s["end"], item["label"]) in outer]
        if mine:
            kept.append({**item, "spans": mine})
    return kept


def place_by_depth(text: str, parsed: list[tuple[int, list[tuple[str, str]]]],
                   labels) -> tuple[list[dict], list[dict]]:
    """(placed, invented) items of one text's answers, each (halvings deep, its items): its
    windows' (place), then each halving's, with only the spans that overlap none placed before
    (second_look.join): where a window's answer and its halves' differ (another label, a value a
    half's edge cut), the window's holds."""
    placed: list[dict] = []
    invented: list[dict] = []
    for depth in sorted({depth for depth, _ in parsed}):
        found = [item for at, items in parsed if at == depth for item in items if item[1] in labels]
        new, unplaced = place(text, found)
        placed = look.join(placed, new, found_by=None) if depth else new
        invented += [item for item in unplaced if item not in invented]
    return placed, invented


def second_look_items(text: str, placed: list[dict], looked: list[str], labels) -> list[dict]:
    """`placed` and the new items of the second look's lines (second_look.join)."""
    if not looked:
        return placed
    found = [item for line in looked for item in parse_answer(line) if item[1] in labels]
    return look.join(placed, place(text, found)[0])
