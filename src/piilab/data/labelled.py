"""Labelled documents as their files hold them, for scoring a model on them: any format piilab
reads, each document whole (no windows, no split, no duplicates dropped), its spans mapped by the
crosswalk onto the canonical labels.

`piilab data build` keeps a document's spans the same way (`canonical_spans`), so a text scored
here has the gold items a built record of it would have.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator

from piilab.data.labels import UNKNOWN, Crosswalk, apply_crosswalk, load_crosswalk, resolve_labels
from piilab.data.records import Document, Span
from piilab.data.sources import SourceSpec, read_documents
from piilab.data.sources.ai4privacy import normalize_language
from piilab.data.sources.base import Tally
from piilab.errors import PiilabError

log = logging.getLogger(__name__)


def canonical_spans(tally: Tally, doc: Document, crosswalk: Crosswalk,
                    labels: tuple[str, ...]) -> list[Span] | None:
    """`doc`'s spans on the canonical labels; None, counted as skipped in `tally` (an error under
    its strict mode), where a span's label is not in the crosswalk: dropping only that span would
    count real PII as none."""
    rules = crosswalk.rules
    unknown = sorted({s.label for s in doc.spans if s.label not in rules and s.label.upper() not in rules})
    if not unknown:
        return apply_crosswalk(doc.text, doc.spans, crosswalk, labels, tally.labels)
    where = f"{tally.files[-1] if tally.files else tally.source}: record {doc.id}"
    if tally.strict:
        raise PiilabError(f"{where}: label {unknown[0]} is not in the crosswalk; map it in a "
                          "--crosswalk CSV (source_label,canonical) or leave out --strict to skip such records")
    for label in unknown:
        tally.labels.add(label, UNKNOWN)
    tally.skip(f"label {unknown[0]} not in the crosswalk", where)
    return None


def chosen_languages(codes: Iterable[str] | None) -> set[str] | None:
    """Language codes as documents are compared with them ("English" is "en"); None: any."""
    return {normalize_language(code) for code in codes} if codes else None


def in_languages(doc: Document, languages: set[str] | None) -> bool:
    """Whether `doc` is in one of `languages` (`chosen_languages`'); one that names none is."""
    language = doc.meta.get("language")
    return languages is None or not language or normalize_language(language) in languages


def labelled_documents(sources: Iterable[str | SourceSpec], tallies: dict[str, Tally], *,
                       crosswalk: str | None = None, labels: Iterable[str] | None = None,
                       languages: Iterable[str] | None = None,
                       strict: bool = False) -> Iterator[Document]:
    """Every labelled document of `sources` (`FORMAT:PATH` or a path), in file order, with
    canonical spans (`crosswalk`: a CSV laid over the shipped one; `labels`: default the seven;
    `languages`: ISO codes, as `piilab data build --language`). What is not kept is counted in
    `tallies` (one per format): unlabelled rows (Alpaca's), blank texts, other languages and
    documents with a label the crosswalk lacks."""
    walk = load_crosswalk(crosswalk)
    canonical = resolve_labels(labels, walk)
    wanted = chosen_languages(languages)
    for spec in sources:
        spec = SourceSpec.parse(spec) if isinstance(spec, str) else spec
        for tally, doc in read_documents(spec, tallies, strict):
            if doc.spans is None:
                tally.skip("unlabelled document (nothing to score against)", doc.id, bad=False)
                continue
            if not doc.text.strip():
                tally.skip("empty text", doc.id)
                continue
            if not in_languages(doc, wanted):
                tally.skip("language not selected", doc.id, bad=False)
                continue
            spans = canonical_spans(tally, doc, walk, canonical)
            if spans is not None:
                tally.written += 1
                yield Document.trusted(doc.id, doc.text, spans, doc.source, doc.meta)


def scoring_record(doc: Document, id_: str | None = None) -> dict:
    """`doc` as the span scorer reads it (piilab.eval.span_scores.score_texts), under `id_` if
    given: id, source, text and its spans."""
    return {"id": doc.id if id_ is None else id_, "source": doc.source, "text": doc.text,
            "spans": [{"start": s.start, "end": s.end, "label": s.label, "value": s.value}
                      for s in doc.spans]}


def log_kept(tallies: dict[str, Tally]) -> None:
    """What each format's files gave to score, and what was left out, by reason and where (a
    warning: the scores leave those documents out)."""
    for name, tally in tallies.items():
        left_out = tally.left_out()
        log.log(logging.WARNING if left_out else logging.INFO, "%s: %d documents read, %d to score%s",
                name, tally.read, tally.written, f"; left out: {left_out}" if left_out else "")
