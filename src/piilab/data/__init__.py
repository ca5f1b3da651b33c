"""Data: PII corpora -> canonical documents -> instruction records -> a split dataset folder.

Modules, in the order of the flow: `sources/` (one reader per input format), `records`
(Span, Document), `labels` (the crosswalk, `crosswalk.csv`), `synth` (synthetic documents from
`templates.yaml`), `compose` with `people`, `ids` and `validators` (documents composed from the
sentence frames in `frames/`, IDs with valid check digits), `answer` (the answer format, shared with eval), `instruct` (prompt +
completion records), `split` (dedup and leakage-aware splits), `build` (`piilab data build`),
`card` (what card.json counts), `dataset` (a built folder read back).
"""

from piilab.data.answer import format_answer, parse_answer
from piilab.data.build import BuildConfig, MixSpec, build_dataset, write_synthetic
from piilab.data.compose import ComposeConfig, compose
from piilab.data.dataset import (
    SPLITS,
    dataset_file,
    dataset_stats,
    iter_records,
    read_records,
)
from piilab.data.labels import DEFAULT_LABELS
from piilab.data.records import Document, Span
from piilab.data.synth import SynthConfig, synthesize

__all__ = [
    "DEFAULT_LABELS", "SPLITS", "BuildConfig", "ComposeConfig", "Document", "MixSpec", "Span", "SynthConfig",
    "build_dataset", "compose", "dataset_file", "dataset_stats", "format_answer", "iter_records",
    "parse_answer", "read_records", "synthesize", "write_synthetic",
]
