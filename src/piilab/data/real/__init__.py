"""Real text shipped as training material: each set a span JSONL file in this folder.

`piilab data build --real mail` (an experiment's `data: {real: [mail]}`) reads a set as it
would read `--source spans:FILE`. Where each set comes from, its licence and how it was made
are in DATA_SOURCES.md beside it; data/build_mail.py rebuilds `mail` from its source.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from piilab.errors import PiilabError

REAL_SETS = {
    "mail": "mail.jsonl",  # SpamAssassin's ham: real e-mails, names and addresses labelled from headers
}


def real_set_path(name: str) -> Path:
    """The shipped file of a real-text set, by name."""
    if name not in REAL_SETS:
        raise PiilabError(f"unknown real-text set {name!r}; shipped: {', '.join(REAL_SETS)}")
    return Path(str(resources.files("piilab.data.real").joinpath(REAL_SETS[name])))
