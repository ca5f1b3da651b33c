"""Helpers shared by tests that drive the real CLI."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path

from piilab.cli import main


def load_script(name: str, path: Path):
    """A script outside the package (benchmarks/, data/) loaded as a module, to test its functions;
    registered under `name`, since dataclasses look their module up there."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def one_line_error(capsys, args, match):
    """Exit code 2 and one error line, last on stderr (a model's loading bar may come before)."""
    code = main(args)
    err = capsys.readouterr().err
    errors = re.findall(r"piilab: error: .*", err)
    assert code == 2
    assert len(errors) == 1 and err.rstrip().endswith(errors[0]) and "Traceback" not in err, err
    assert match in errors[0], err
