"""What an eval's outputs depend on besides its flags (the test file, every model, adapter and
lens folder), fingerprinted by content, and the bookkeeping that keeps an eval folder to them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import struct
from pathlib import Path
from typing import Any

from piilab.errors import PiilabError
from piilab.io import read_json

log = logging.getLogger(__name__)

FULL_HASH_BYTES = 64 << 20  # adapters, configs and tokenizers are hashed whole (about 0.1 s)
SAMPLES, SAMPLE_BYTES = 16, 1 << 16  # larger weights: these many evenly spaced chunks
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")
# Besides the weights, the files of a folder that decide what it decodes. Logs and metrics
# (rewritten by a resumed training run) are left out, so they never force a recompute.
DECODING_FILES = frozenset({
    "config.json", "generation_config.json", "adapter_config.json", "tokenizer.json",
    "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json", "tokenizer.model",
    "vocab.json", "merges.txt", "chat_template.jinja", "chat_template.json", "prompt_format.json",
    "lens_config.json",
})


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def safetensors_header(handle) -> bytes:
    """The JSON header of a safetensors file (tensor names, dtypes, shapes, offsets)."""
    handle.seek(0)
    size = struct.unpack("<Q", handle.read(8) or b"\0" * 8)[0]
    return handle.read(min(size, FULL_HASH_BYTES))


def file_fingerprint(path: Path) -> dict[str, Any]:
    """A small file's sha256; for a large one its size, mtime, header hash and sampled chunks.

    The header alone would not do: a model retrained with the same shapes has the same header.
    """
    stat = path.stat()
    if stat.st_size <= FULL_HASH_BYTES:
        return {"size": stat.st_size, "sha256": sha256_file(path)}
    sampled = hashlib.sha256()
    with path.open("rb") as handle:
        header = safetensors_header(handle) if path.suffix == ".safetensors" else b""
        chunk = min(SAMPLE_BYTES, stat.st_size)
        for i in range(SAMPLES):
            handle.seek((stat.st_size - chunk) * i // (SAMPLES - 1))
            sampled.update(handle.read(chunk))
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
            "header_sha256": hashlib.sha256(header).hexdigest(), "sampled_sha256": sampled.hexdigest()}


def folder_fingerprint(folder: str | Path) -> dict[str, Any]:
    """{file name: fingerprint} for a folder's weights and the files that decide its decoding."""
    folder = Path(folder)
    return {entry.name: file_fingerprint(entry) for entry in sorted(folder.iterdir())
            if entry.is_file() and (entry.suffix in WEIGHT_SUFFIXES or entry.name in DECODING_FILES)}


def lens_folder(lens: str) -> str | None:
    """The folder a lens spec such as tuned:LENS_DIR reads, if any."""
    _, _, arg = lens.partition(":")
    return arg if arg and Path(arg).is_dir() else None


def model_fingerprint(spec: str, adapter: str | None, lens: str) -> dict[str, Any]:
    """Content fingerprints of a model under test: its base weights, adapter and lens folder.

    A hub model is named by its id only: its files are fetched by transformers, not read here.
    """
    from piilab import models

    resolved = models.resolve(spec)
    adapter = adapter or resolved.adapter
    found: dict[str, Any] = {
        "base": {"hub": resolved.path} if resolved.kind == "hub" else folder_fingerprint(resolved.path),
    }
    if adapter:
        found["adapter"] = folder_fingerprint(adapter)
    if lens_folder(lens):
        found["lens"] = folder_fingerprint(lens_folder(lens))
    return found


def digest(value: Any) -> str:
    """sha256 of a JSON value, keys sorted: the same inputs give the same digest anywhere."""
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


def changed_inputs(saved: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """Names of the inputs (test file, models) whose fingerprint differs from the saved one."""
    changed = []
    if saved.get("dataset", {}).get("sha256") != now["dataset"]["sha256"]:
        changed.append(f"the test file {now['dataset']['path']}")
    before = {entry.get("name"): entry.get("fingerprint_sha256") for entry in saved.get("models", [])
              if isinstance(entry, dict)}
    for entry in now["models"]:
        if entry["name"] in before and before[entry["name"]] != entry["fingerprint_sha256"]:
            changed.append(entry["name"])
    return changed


# ---------------------------------------------------------------- an eval folder


def eval_inputs(config, plan: dict) -> dict[str, Any]:
    """The content this eval's outputs depend on: the test file's sha256 and, per model, the
    fingerprint of its weights, adapter and lens folder, with `key`, the digest of both."""
    from piilab.data.dataset import dataset_file
    from piilab.models import trained_folder

    data_path = dataset_file(config.data, "test")
    dataset = {"path": str(data_path.resolve()), "sha256": sha256_file(data_path)}
    entries = []
    for model in plan:
        lens = config.lens_of(model)
        found = model_fingerprint(model.spec, model.adapter, lens)
        folder = trained_folder(model.spec, model.adapter)
        name = f"model {model.spec}" + (f" with adapter {model.adapter}" if model.adapter else "")
        if "lens" in found:
            name += f" through lens {lens}"
        entries.append({
            "name": name, "model": model.spec, "adapter": model.adapter, "lens": lens,
            "trained_folder": str(Path(folder).resolve()) if folder else None,
            "fingerprint": found, "fingerprint_sha256": digest(found),
            "key": digest([dataset["sha256"], digest(found)])[:16],
        })
    return {"dataset": dataset, "models": entries}


def prune_stale_outputs(folder: Path, run_ids: set[str]) -> None:
    """Delete outputs files of runs this eval does not have: earlier inputs' (or a part file's)."""
    if not folder.is_dir():
        return
    stale = []
    for path in folder.glob("*.jsonl"):
        rid = re.sub(r"\.rank\d+$", "", path.name.removesuffix(".jsonl"))
        if rid not in run_ids:
            stale.append(path)
    for path in stale:
        path.unlink()
    if stale:
        log.warning("%s: deleted %d outputs file(s) of earlier inputs (%s)", folder, len(stale),
                    ", ".join(sorted(p.name for p in stale)[:3]) + (", ..." if len(stale) > 3 else ""))


def previous_results(path: Path) -> dict[str, Any]:
    """results.json as a cache of scores: unreadable, it is only scored again (logged)."""
    if not path.exists():
        return {}
    try:
        previous = read_json(path)
    except PiilabError as err:
        previous = err
    if not isinstance(previous, dict) or not isinstance(previous.get("runs", []), list):
        reason = previous if isinstance(previous, PiilabError) else f"{path}: not a results object"
        log.warning("%s; every run is scored again from its outputs", reason)
        return {}
    return previous
