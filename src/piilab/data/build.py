"""`piilab data build`: sources -> canonical documents -> instruction records -> train/test/card.

Two streaming passes keep memory flat in the input size. Pass 1 reads every source, maps labels,
drops duplicates, cuts windows, builds the records and spools them to a temporary file, keeping
only 64-bit hashes for the split. The split is then planned over those hashes, and pass 2 routes
each spooled record to train.jsonl or test.jsonl, mixing Alpaca rows in at their fraction.
All three outputs are written atomically; card.json is written last.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
from tqdm.auto import tqdm

from piilab import __version__
from piilab.data import compose
from piilab.data.card import SplitStats
from piilab.data.carriers import carriers
from piilab.data.dataset import SPLITS
from piilab.data.instruct import alpaca_record, build_record, get_style, windows
from piilab.data.labelled import canonical_spans, chosen_languages, in_languages
from piilab.data.labels import definition, load_crosswalk, resolve_labels
from piilab.data.real import real_set_path
from piilab.data.records import Document
from piilab.data.sources import SourceSpec, read_documents
from piilab.data.sources.base import Tally
from piilab.data.split import (
    Deduper,
    HashSet,
    SplitPlan,
    SplitPlanner,
    group_of,
    hash64,
    mix_count,
)
from piilab.data.synth import GENRES as synth_genres
from piilab.data.synth import SOURCE as synth_source
from piilab.data.synth import SynthConfig, synthesize
from piilab.errors import PiilabError
from piilab.io import atomic_write, clear_stale_scratch, output_folder, scratch_dir, write_json, write_jsonl

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
_MASK64 = (1 << 64) - 1
# Spool and output files move ~3 KB a record: 64 KiB buffers make a system call every ~20
# records rather than every one (the default 8 KiB buffer passes larger writes straight through).
_BUFFER = 1 << 16
_SPOOL_PREFIX = ".piilab-build-"
_ONE_FIELD = str.maketrans("\t\n\r", "   ")  # a source name in a spool line's tab-separated head


@dataclass
class MixSpec:
    """One `--mix alpaca:PATH:FRACTION` argument."""

    path: str
    """Alpaca-style JSON (or JSONL) file of {instruction, input, output} rows."""
    fraction: float
    """Share of each split's records that are rows of this file (0 <= fraction < 1)."""

    @classmethod
    def parse(cls, text: str) -> "MixSpec":
        body = text[len("alpaca:") :] if text.startswith("alpaca:") else text
        path, sep, fraction = body.rpartition(":")
        try:
            return cls(path=path, fraction=float(fraction)) if sep and path else cls._bad(text)
        except ValueError:
            return cls._bad(text)

    @staticmethod
    def _bad(text: str) -> "MixSpec":
        raise PiilabError(f"--mix expects alpaca:PATH:FRACTION, got {text!r}")


GENERATORS = ("templates", "compose")


def synthetic_documents(generator: str, n: int, seed: int, locales: list[str] | None,
                        genres: list[str] | None = None, excerpts: float = 0.0) -> tuple[Iterator[Document], str]:
    """The documents of one synthetic generator and the source name they carry."""
    if generator == "compose":
        config = compose.ComposeConfig(n=n, seed=seed, **({"locales": locales} if locales else {}),
                                       **({"genres": genres} if genres else {}), excerpt_share=excerpts)
        return compose.compose(config), compose.SOURCE
    return synthesize(SynthConfig(n=n, seed=seed, **({"locales": locales} if locales else {}),
                                  **({"genres": tuple(genres)} if genres else {}))), synth_source


@dataclass
class BuildConfig:
    """Everything `build_dataset` needs; the card stores it beside the data."""

    out: str
    """Output directory for train.jsonl, test.jsonl and card.json."""
    sources: list[SourceSpec] = field(default_factory=list)
    """Corpora to read (`FORMAT:PATH`, PATH a file, glob or directory)."""
    synthetic: int = 0
    """Number of synthetic documents to generate and add."""
    mix: list[MixSpec] = field(default_factory=list)
    """Alpaca-style files mixed into both splits, each at its fraction."""
    test_size: float = 0.1
    """Share of each source's documents that goes to test."""
    heldout_share: float = 0.5
    """For template splits: share of the test set drawn from templates held out entirely."""
    split_by: str = "auto"
    """'auto' (template where documents have one, else document), 'document', 'template' or 'field:NAME'."""
    seed: int = 0
    """Seed for the split, the mix sample and the synthetic documents."""
    labels: list[str] | None = None
    """Canonical label set (default: the seven); spans of other labels are dropped and counted."""
    crosswalk: str | None = None
    """A CSV laid over the shipped crosswalk (rows it names replace the shipped ones)."""
    prompt_style: str = "default"
    """Prompt style name (instruct.PROMPT_STYLES)."""
    max_chars: int = 2000
    """Window size in characters (~max_chars / 4 tokens of English); longer texts are windowed."""
    overlap: int = 200
    """Characters shared by consecutive windows."""
    languages: list[str] | None = None
    """Keep only documents in these languages (ISO codes); documents without one are kept."""
    dedup: bool = True
    """Drop exact and near-duplicate texts before splitting."""
    strict: bool = False
    """Treat every skipped or repaired bad record as an error."""
    synthetic_locales: list[str] | None = None
    """Faker locales for the synthetic documents (None: the generator's own default set)."""
    generator: str = "templates"
    """Synthetic generator: 'templates' (synth.py, 82 templates) or 'compose' (compose.py, frames)."""
    synthetic_genres: list[str] | None = None
    """The synthetic generator's genres (None: all of them)."""
    excerpts: float = 0.0
    """compose only: share of its documents replaced by a few of their own lines (excerpts.py)."""
    real: list[str] = field(default_factory=list)
    """Shipped real-text sets to read as sources, by name (piilab.data.real: 'mail')."""
    carriers: int = 0
    """Real texts of the `real` sets with composed PII sentences inserted, added (carriers.py)."""

    def __post_init__(self) -> None:
        # An experiment YAML gives strings ("kaggle:train.json") or mappings ({path, format}).
        self.sources = [SourceSpec.parse(s) if isinstance(s, str) else SourceSpec(**s) if isinstance(s, dict) else s
                        for s in self.sources]
        self.mix = [MixSpec.parse(m) if isinstance(m, str) else MixSpec(**m) if isinstance(m, dict) else m
                    for m in self.mix]
        if self.synthetic < 0:
            raise PiilabError(f"--synthetic must be >= 0, got {self.synthetic}")
        self.real = [self.real] if isinstance(self.real, str) else list(self.real)  # `real: mail` in YAML
        for name in self.real:
            real_set_path(name)  # an unknown name fails here, before anything is read
        if self.carriers < 0 or (self.carriers and not self.real):
            raise PiilabError(f"--carriers needs --real NAME and a count >= 0, got {self.carriers}")
        if not self.sources and not self.real and self.synthetic <= 0:
            raise PiilabError("nothing to build: give --source FORMAT:PATH, --real NAME and/or --synthetic N")
        if not 0 <= self.test_size < 1:
            raise PiilabError(f"--test-size must be in [0, 1), got {self.test_size}")
        if sum(m.fraction for m in self.mix) >= 1 or any(m.fraction < 0 for m in self.mix):
            raise PiilabError("mix fractions must be >= 0 and add up to less than 1")
        if self.split_by not in ("auto", "document", "template") and not self.split_by.startswith("field:"):
            raise PiilabError(f"unknown --split-by {self.split_by!r}; use auto, document, template or field:NAME")
        if self.split_by == "field:":
            raise PiilabError("--split-by field: needs a field name: field:NAME groups documents by meta[NAME]")
        if self.seed < 0:  # numpy's generator, which draws the split and the mix, takes no negative seed
            raise PiilabError(f"--seed must be >= 0, got {self.seed}")
        if self.generator not in GENERATORS:
            raise PiilabError(f"unknown --generator {self.generator!r}; use {' or '.join(GENERATORS)}")
        if self.max_chars <= 0 or not 0 <= self.overlap < self.max_chars:
            raise PiilabError("need --max-chars > 0 and 0 <= --overlap < --max-chars")
        if not 0 <= self.excerpts <= 1 or (self.excerpts and self.generator != "compose"):
            raise PiilabError(f"--excerpts must be in [0, 1] and needs --generator compose, got {self.excerpts} "
                              f"with {self.generator}")
        known = compose.GENRES if self.generator == "compose" else synth_genres
        unknown = [genre for genre in self.synthetic_genres or () if genre not in known]
        if unknown:  # before the output folder is made, not while the documents are drawn
            raise PiilabError(f"unknown genre(s) {', '.join(unknown)} for the {self.generator} "
                              f"generator; choose from {', '.join(known)}")


_encode = msgspec.json.Encoder().encode


def dumps_record(record: dict) -> bytes:
    """A record as compact UTF-8 JSON, keys in order, non-ASCII text as is: the JSON of
    json.dumps(record, ensure_ascii=False, separators=(",", ":")), ~20x faster (msgspec)."""
    return _encode(record)


def _spool_line(record: dict, group: int, doc: int) -> bytes:
    """One spooled record: the split keys and its statistics, tab-separated before its JSON."""
    labels = ",".join([s["label"] for s in record["spans"] or ()])
    source = record["source"].translate(_ONE_FIELD)  # a tab or line break would split the line
    head = (f"{group}\t{doc}\t{source}\t{record['meta']['window']}\t{len(record['text'])}\t"
            f"{len(record['prompt'])}\t{len(record['completion'])}\t{labels}\t")
    return b"".join((head.encode("utf-8"), _encode(record), b"\n"))


def _parse_spool(line: bytes) -> tuple[int, int, str, int, tuple[int, int, int], list[str], bytes]:
    """The fields of a spooled line; the record's JSON keeps its line break."""
    group, doc, source, window, t, p, c, labels, body = line.split(b"\t", 8)
    return (int(group), int(doc), source.decode("utf-8"), int(window), (int(t), int(p), int(c)),
            labels.decode("ascii").split(",") if labels else [], body)


def _tag_heldout(body: bytes, heldout: bool) -> bytes:
    """Add meta.heldout_template to a serialised record line (meta is its last key, see build_record)."""
    if not body.endswith(b"}}\n"):
        raise AssertionError("a spooled record must end with its meta object")
    return body[:-3] + (b',"heldout_template":true}}\n' if heldout else b',"heldout_template":false}}\n')


def _pii_documents(config: BuildConfig, tallies: dict[str, Tally]) -> Iterator[tuple[Tally, Document]]:
    for spec in config.sources:
        yield from read_documents(spec, tallies, config.strict)
    real: dict[str, tuple[Tally, Document]] = {}  # copies: a build changes the documents it keeps
    for name in config.real:
        for tally, doc in read_documents(SourceSpec(str(real_set_path(name)), "spans"), tallies, config.strict):
            if config.carriers and doc.spans is not None:
                real[doc.id] = tally, Document.trusted(doc.id, doc.text, list(doc.spans), doc.source, dict(doc.meta))
            yield tally, doc
    for doc in carriers([doc for _, doc in real.values()], config.carriers, config.seed,
                        config.synthetic_locales or compose.DEFAULT_LOCALES):
        tally = real[doc.meta["split_group"]][0]  # a carrier counts with its real text's source
        tally.read += 1
        yield tally, doc
    if config.synthetic > 0:
        docs, source = synthetic_documents(config.generator, config.synthetic, config.seed,
                                           config.synthetic_locales, config.synthetic_genres, config.excerpts)
        tally = tallies.setdefault(source, Tally(source, strict=config.strict))
        cut = f", {config.excerpts:g} of them as excerpts" if config.excerpts else ""
        tally.files.append(f"(generated: {config.synthetic} documents by {config.generator}, seed {config.seed}{cut})")
        for doc in docs:
            tally.read += 1
            yield tally, doc


class _Builder:
    """State of one build; `run` is the whole of it."""

    def __init__(self, config: BuildConfig) -> None:
        self.config = config
        self.crosswalk = load_crosswalk(config.crosswalk)
        self.labels = resolve_labels(config.labels, self.crosswalk)
        self.style = get_style(config.prompt_style)
        self.languages = chosen_languages(config.languages)
        self.tallies: dict[str, Tally] = {}
        self.mix_tally = Tally("alpaca", strict=config.strict)
        self.dedup = Deduper() if config.dedup else None
        self.ids = HashSet()
        self.planner = SplitPlanner()

    # pass 1 ------------------------------------------------------------------------------------
    def keep(self, tally: Tally, doc: Document) -> Document | None:
        """The canonical document to write, or None after counting why it is skipped."""
        if tally.source == "alpaca":  # the reader, not a row's `source`: built files read back as spans
            raise PiilabError(f"{doc.id}: Alpaca rows are mixed in with --mix alpaca:PATH:FRACTION, not --source")
        if doc.spans is None:
            tally.skip("unlabelled document (no labels to learn from)", doc.id, bad=False)
            return None
        if not doc.text or doc.text.isspace():
            tally.skip("empty text", doc.id)
            return None
        if not in_languages(doc, self.languages):
            tally.skip("language not selected", doc.id, bad=False)
            return None
        keys = self.dedup.keys(doc.text) if self.dedup else None
        reason = keys and self.dedup.repeat(keys)
        if reason:
            tally.skip(reason, doc.id, bad=False)
            return None
        spans = canonical_spans(tally, doc, self.crosswalk, self.labels)
        if spans is None:
            return None
        if keys:  # only now: a skipped document must not make a later copy of it a "duplicate"
            self.dedup.remember(keys)
        doc_id = doc.id
        # Python's str hash is enough here: ids only need to be unique within this build.
        if not self.ids.add(hash(doc_id) & _MASK64):
            tally.repair("duplicate document id (renamed)", doc.id)
            k = 2
            while not self.ids.add(hash(f"{doc.id}~{k}") & _MASK64):
                k += 1
            doc_id = f"{doc.id}~{k}"
        # The reader's document is ours to change; apply_crosswalk's spans are sorted and exact,
        # so this skips a second round of Document checks on the hot path.
        doc.id, doc.spans = doc_id, spans
        return doc

    def split_keys(self, doc: Document) -> tuple[str, int, int]:
        """(mode, group hash, document hash); stable across runs, so the split is reproducible."""
        mode, key = group_of(doc, self.config.split_by)
        doc_hash = hash64(doc.id)
        return mode, doc_hash if key == doc.id else hash64(key), doc_hash

    def pass1(self, spool) -> None:
        config = self.config
        max_chars, overlap, style, labels = config.max_chars, config.overlap, self.style, self.labels
        keep, split_keys, plan, write = self.keep, self.split_keys, self.planner.add, spool.write
        for tally, doc in tqdm(_pii_documents(config, self.tallies), desc="reading", unit=" docs", disable=None):
            doc = keep(tally, doc)
            if doc is None:
                continue
            mode, group, doc_hash = split_keys(doc)
            parts = windows(doc, max_chars, overlap)
            for part in parts:
                write(_spool_line(build_record(part, style, labels), group, doc_hash))
            plan(doc.source, mode, group, doc_hash, len(parts))
            tally.written += 1

    def read_mix(self, spool) -> list[tuple[int, float]]:
        """Spool every usable Alpaca row; returns (rows, fraction) per --mix file."""
        counts = []
        for spec in self.config.mix:
            seen = Deduper()
            n = 0
            for tally, doc in read_documents(SourceSpec(spec.path, "alpaca"), {"alpaca": self.mix_tally}, self.config.strict):
                if seen.check(doc.meta["instruction"] + "\x00" + doc.text + "\x00" + doc.meta["output"]) == Deduper.EXACT:
                    tally.skip("exact duplicate row", doc.id, bad=False)
                    continue
                record = alpaca_record(doc, self.style)
                lengths = f"{len(record['text'])}\t{len(record['prompt'])}\t{len(record['completion'])}"
                spool.write(f"{len(counts)}\t{lengths}\t".encode("utf-8") + dumps_record(record) + b"\n")
                n += 1
            counts.append((n, spec.fraction))
        return counts

    # between the passes -------------------------------------------------------------------------
    def assign_mix(self, counts: list[tuple[int, float]], plan: SplitPlan) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Per spooled Alpaca row: 0 unused, 1 train, 2 test; and each split's mix positions."""
        rng = np.random.default_rng(self.config.seed)
        total_fraction = sum(f for _, f in counts)
        assign = np.zeros(sum(n for n, _ in counts), dtype=np.uint8)
        wanted = {s: 0 for s in SPLITS}
        offset = 0
        for (n, fraction), spec in zip(counts, self.config.mix):
            # Each file is `fraction` of the final split: k = P * f / (1 - sum of fractions).
            want = {s: round(mix_count(plan.records[s], total_fraction) * fraction / total_fraction) if total_fraction else 0
                    for s in SPLITS}
            if want["train"] + want["test"] > n:
                log.warning("%s: %d rows asked for, %d available; using all", spec.path, want["train"] + want["test"], n)
                want["test"] = int(n * want["test"] / max(1, want["train"] + want["test"]))
                want["train"] = n - want["test"]
            perm = rng.permutation(n) + offset
            assign[perm[: want["test"]]] = 2
            assign[perm[want["test"] : want["test"] + want["train"]]] = 1
            unused = n - want["test"] - want["train"]
            if unused:
                self.mix_tally.skip("not sampled (beyond the --mix fraction)", spec.path, bad=False, n=unused)
            self.mix_tally.written += want["test"] + want["train"]
            wanted = {s: wanted[s] + want[s] for s in SPLITS}
            offset += n
        positions = {}
        for code, s in ((1, "train"), (2, "test")):
            slots = plan.records[s] + wanted[s]
            positions[s] = np.sort(rng.choice(slots, size=wanted[s], replace=False)) if wanted[s] else np.empty(0, int)
        return assign, positions

    # pass 2 ------------------------------------------------------------------------------------
    def pass2(self, pii_path: Path, mix_path: Path, plan: SplitPlan, assign: np.ndarray,
              positions: dict[str, np.ndarray]) -> dict[str, Any]:
        out = Path(self.config.out)
        stats = {s: SplitStats(self.config.seed) for s in SPLITS}
        digests = {s: hashlib.sha256() for s in SPLITS}
        with ExitStack() as stack:
            handles = {s: stack.enter_context(atomic_write(out / f"{s}.jsonl", "wb", buffering=_BUFFER)) for s in SPLITS}
            mixed = {s: self._mix_rows(stack, mix_path, assign, code) for code, s in ((1, "train"), (2, "test"))}
            next_pos = {s: 0 for s in SPLITS}

            def emit(split: str, line: bytes, source: str, window: int, labels, lengths, heldout) -> None:
                handles[split].write(line)
                digests[split].update(line)
                stats[split].add(source, window, labels, lengths, heldout)

            def emit_mix(split: str, rest: bool = False) -> None:
                """Write the mix rows whose slot has come (all the remaining ones if `rest`)."""
                pos = positions[split]
                while next_pos[split] < len(pos) and (rest or pos[next_pos[split]] <= stats[split].records):
                    record_json, lengths = next(mixed[split])
                    emit(split, record_json, "alpaca", 0, [], lengths, None)
                    next_pos[split] += 1

            side = plan.side
            mixing = {s: len(positions[s]) > 0 for s in SPLITS}
            with pii_path.open("rb", buffering=_BUFFER) as spool:
                for line in tqdm(spool, desc="writing", unit=" records", disable=None):
                    group, doc, source, window, lengths, labels, body = _parse_spool(line)
                    split, heldout = side(group, doc)
                    if mixing[split]:
                        emit_mix(split)
                    if heldout is not None:
                        body = _tag_heldout(body, heldout)
                    handles[split].write(body)
                    digests[split].update(body)
                    stats[split].add(source, window, labels, lengths, heldout)
            for split in SPLITS:
                emit_mix(split, rest=True)
        return {s: {**stats[s].to_card(), "file": f"{s}.jsonl", "sha256": digests[s].hexdigest()} for s in SPLITS}

    @staticmethod
    def _mix_rows(stack: ExitStack, path: Path, assign: np.ndarray, code: int) -> Iterator[tuple[bytes, tuple[int, int, int]]]:
        handle = stack.enter_context(path.open("rb", buffering=_BUFFER))

        def rows() -> Iterator[tuple[bytes, tuple[int, int, int]]]:
            for i, line in enumerate(handle):
                if assign[i] == code:
                    _, t, p, c, body = line.split(b"\t", 4)
                    yield body, (int(t), int(p), int(c))

        return rows()

    # the whole build -----------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        with output_folder(self.config.out, "--out") as out:  # a failed build leaves no folder it made
            return self._run(out)

    def _run(self, out: Path) -> dict[str, Any]:
        config = self.config
        clear_stale_scratch(out, _SPOOL_PREFIX)
        with scratch_dir(out, _SPOOL_PREFIX) as tmp:
            pii_path, mix_path = Path(tmp) / "records.spool", Path(tmp) / "mix.spool"
            with pii_path.open("wb", buffering=_BUFFER) as spool:
                self.pass1(spool)
            with mix_path.open("wb", buffering=_BUFFER) as spool:
                counts = self.read_mix(spool)
            plan = self.planner.plan(config.test_size, config.seed, config.heldout_share)
            if plan.records["train"] + plan.records["test"] == 0:
                raise PiilabError("no records to write: every input record was skipped (" + self._skips() + ")")
            assign, positions = self.assign_mix(counts, plan)
            splits = self.pass2(pii_path, mix_path, plan, assign, positions)
        if splits["test"]["records"] == 0:
            log.warning("the test split is empty (too few documents or groups for --test-size %s)", config.test_size)
        card = self.card(splits)
        write_json(out / "card.json", card)
        log.info("wrote %d train and %d test records to %s", splits["train"]["records"], splits["test"]["records"], out)
        if not card["balanced"]:
            raise AssertionError("records in != written + skipped; see card.json sources")
        return card

    def _skips(self) -> str:
        reasons: Counter = Counter()
        empty = []
        for tally in self.tallies.values():
            reasons.update(tally.skipped)
            empty += tally.empty_files
        said = [f"{n} {reason}" for reason, n in reasons.most_common(5)]
        return "; ".join(said + [f"{path}: no records in it" for path in empty[:5]]) or "no input records"

    def card(self, splits: dict[str, Any]) -> dict[str, Any]:
        tallies = dict(sorted(self.tallies.items()))
        if self.config.mix:
            tallies["alpaca"] = self.mix_tally
        return {
            "schema_version": SCHEMA_VERSION,
            "piilab_version": __version__,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "config": _jsonable(asdict(self.config)),
            "prompt_style": self.style.name,
            "labels": {label: definition(label) for label in self.labels},
            "splits": splits,
            "sources": {name: t.to_card() for name, t in tallies.items()},
            "crosswalk": {
                "origin": self.crosswalk.origin,
                "coverage": {name: t.labels.coverage(self.crosswalk) for name, t in tallies.items() if t.labels.counts},
            },
            "balanced": all(t.balanced for t in tallies.values()),
        }


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def build_dataset(config: BuildConfig) -> dict[str, Any]:
    """Build DIR/train.jsonl, DIR/test.jsonl and DIR/card.json; returns the card."""
    return _Builder(config).run()


def write_synthetic(config: SynthConfig | compose.ComposeConfig, out: str | os.PathLike) -> int:
    """Write synthetic documents (templates or composed) as span JSONL (readable with `--source spans:FILE`)."""
    docs = compose.compose(config) if isinstance(config, compose.ComposeConfig) else synthesize(config)
    rows = ({"id": d.id, "text": d.text, "spans": [s.to_dict() for s in d.spans or ()],
             "source": d.source, "meta": d.meta} for d in docs)
    return write_jsonl(out, rows)
