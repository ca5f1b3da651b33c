"""piilab: PII instruction tuning and layer-wise evaluation of language models."""

__version__ = "0.1.0"
