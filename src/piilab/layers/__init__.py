"""Layers: decoding from any exit layer (final norm + unembedding, KV cache, batches).

Modules: `lens` (the logit lens: how layer L's hidden state becomes logits), `tuned_lens`
(learned per-layer translators) and `lens_training` (`piilab lens train`), `lenses` (every lens
by name), `generate` (batched decoding from several exit layers at once), `speculative`
(self-speculation: drafts from an early layer, verified at full depth), `lookup` (drafts
from the prompt itself, in batches: extraction's default), `linears` (merged or bf16 linear copies).
"""

from piilab.layers.decode import Decoding, generate
from piilab.layers.lens import Lens
from piilab.layers.lens_training import LensTrainConfig, train_lens
from piilab.layers.lenses import make_lens, register_lens
from piilab.layers.speculative import speculative_generate
from piilab.layers.tuned_lens import load_tuned_lens

__all__ = [
    "Decoding", "Lens", "LensTrainConfig", "generate", "load_tuned_lens", "make_lens",
    "register_lens", "speculative_generate", "train_lens",
]
