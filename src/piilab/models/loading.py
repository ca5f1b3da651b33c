"""Model specs (embedded names, local folders, adapters, hub ids): resolved, loaded and described."""

from __future__ import annotations

import contextlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from piilab.errors import PiilabError
from piilab.models.embedded import EMBEDDED, ensure_embedded

log = logging.getLogger(__name__)

DEFAULT_MODEL = "smollm2-135m"



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
    """Resolve an embedded name, a shipped adapter, a local folder (model or adapter) or an
    explicit hub id."""
    from piilab.models.shipped import shipped_adapters  # here: `python -m` runs that module

    if spec in EMBEDDED:
        return ResolvedModel(spec, "embedded", str(ensure_embedded(spec)))
    shipped = shipped_adapters()
    path = shipped[spec] if spec in shipped else Path(spec).expanduser()
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
    known = ", ".join([*EMBEDDED, *shipped])
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
        except ValueError as err:
            if "trust_remote_code" not in str(err):
                raise
            raise PiilabError(
                f"{resolved.path}: this model comes with its own Python code; piilab runs it only "
                "with --trust-remote-code (read the code first)"
            ) from None
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


def model_config(spec: str, trust_remote_code: bool = False):
    """A model spec's config (no weights loaded); an adapter folder's is its base model's."""
    return load_config(resolve(spec), trust_remote_code)


def model_depth(spec: str, trust_remote_code: bool = False) -> int:
    """How many decoder layers a model spec has, from its config (no weights loaded)."""
    return model_config(spec, trust_remote_code).num_hidden_layers


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

    from piilab.models import arch
    from piilab.runtime import choose_runtime

    resolved = resolve(spec)
    if adapter and resolved.adapter:
        raise PiilabError(f"{spec} is already an adapter folder; do not also pass --adapter")
    adapter = adapter or resolved.adapter
    if adapter:
        resolved = ResolvedModel(spec, resolved.kind, resolved.path, adapter=str(adapter))
    if resolved.kind != "hub" and weights_format(Path(resolved.path)) == PICKLE:
        raise PiilabError(_PICKLE_REFUSED.format(path=resolved.path))
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
    """Wrap a base model with a PEFT adapter, checking the adapter fits this base. An adapter
    stored only as a pickle is refused, as a base model is: PEFT would load it."""
    from peft import PeftModel

    if _pickle_only_adapter(adapter_dir):
        raise PiilabError(_PICKLE_REFUSED.format(path=adapter_dir))
    try:
        with peft_wrap_quietly():
            return PeftModel.from_pretrained(model, str(adapter_dir))
    except (RuntimeError, ValueError, KeyError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise PiilabError(
            f"{adapter_dir}: adapter does not fit base model "
            f"{model.config.name_or_path or model.config.model_type}: {first[:200]}"
        ) from None


def _pickle_only_adapter(adapter: str | os.PathLike) -> bool:
    """Whether an adapter folder, or a hub adapter as far as the hub answers, has no
    adapter_model.safetensors but pickled weights (PEFT falls back to adapter_model.bin)."""
    folder = Path(adapter)
    if folder.is_dir():
        return weights_format(folder) == PICKLE
    try:
        from huggingface_hub import file_exists

        return not file_exists(str(adapter), "adapter_model.safetensors")
    except Exception:  # offline, unknown or private: PEFT's own loading says what is wrong
        return False


# ---------------------------------------------------------------- info


def _meta_parameter_count(config) -> int:
    """Parameters of a model built on the meta device: no weights are read or allocated."""
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return sum(p.numel() for p in model.parameters())  # tied weights are counted once


SAFETENSORS, PICKLE = "safetensors", "pickle"
_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt")
_PICKLE_REFUSED = ("{path}: has only pickle weights (.bin/.pt), which piilab refuses to load (a pickle "
                   "can run code); convert them to safetensors, e.g. save_pretrained(..., "
                   "safe_serialization=True) in a session you trust")


def weights_format(path: Path) -> str | None:
    """'safetensors', 'pickle' (pickle files only), or None (no weight files)."""
    if any(path.glob("*.safetensors")):
        return SAFETENSORS
    if any(p.suffix in _PICKLE_SUFFIXES for p in path.iterdir() if p.is_file()):
        return PICKLE
    return None


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
    from piilab.models import arch

    resolved = resolve(spec)
    config = load_config(resolved, trust_remote_code)
    tokenizer = load_tokenizer(resolved, trust_remote_code)
    model_type = config.model_type
    weights = weights_format(Path(resolved.path)) if resolved.kind != "hub" else None
    try:
        arch.arch_spec(model_type)
        supported = weights != PICKLE  # piilab cannot load a pickle-only folder
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
        "weights": "pickle only (refused: convert to safetensors)" if weights == PICKLE else weights,
        "num_layers": config.num_hidden_layers,
        "hidden_size": config.hidden_size,
        "vocab_size": config.vocab_size,
        "parameters": _meta_parameter_count(config),
        "dtype": stored or str(getattr(config, "dtype", None) or "float32").removeprefix("torch."),
        "max_position_embeddings": getattr(config, "max_position_embeddings", None),
        "chat_template": bool(getattr(tokenizer, "chat_template", None)),
        "tie_word_embeddings": bool(getattr(config, "tie_word_embeddings", False)),
    }
