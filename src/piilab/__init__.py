"""piilab: PII instruction tuning and layer-wise evaluation of language models."""

from piilab.threads import quiet_openmp

__version__ = "0.1.0"

# Before anything imports torch: its OpenMP runtime reads how to wait only once, when it loads.
quiet_openmp()
