"""Helpers shared by tests that drive the real CLI."""

from __future__ import annotations

import json
import re

from piilab.cli import main


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
