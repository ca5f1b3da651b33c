"""--output files that a rerun resumes: the rows already there are not done again.

Rows are appended a round at a time and flushed to disk; a line torn by a kill is cut off and
done again (piilab.io.done_ids). The settings that decide the rows are written first to
OUTPUT.settings.json, and a rerun with other settings is refused, so a file never mixes rows of
two runs.
"""

from __future__ import annotations

import json
from pathlib import Path

from piilab.errors import PiilabError


def id_key(id_) -> str:
    """An id as resuming compares it: its JSON (so 7 and "7" stay apart, and any JSON value works)."""
    return json.dumps(id_, sort_keys=True, ensure_ascii=False)


def unique_ids(path: str, ids: list) -> None:
    """--output resumes by id: refuse an input where two rows share one."""
    first: dict[str, int] = {}
    for row, id_ in enumerate(ids):
        if first.setdefault(id_key(id_), row) != row:
            raise PiilabError(f"{path}: two rows have the id {id_key(id_)}; --output resumes by id, "
                              "so each row needs its own (or none: the row's number is used)")


def where(spec: str | None) -> str | None:
    """A path as the settings file keeps it (absolute, so a rerun from elsewhere matches)."""
    return str(Path(spec).resolve()) if spec and Path(spec).exists() else spec


def model_files(spec: str, adapter: str | None, lens: str) -> str:
    """A digest of the model's files (base weights, adapter, lens folder: piilab.eval.inputs), so
    a model retrained, or shipped anew, under the same name is not resumed into the same file."""
    from piilab.eval.inputs import digest, model_fingerprint

    return digest(model_fingerprint(spec, adapter, lens))


def resumed(output: Path, identity: dict, verb: str, key=lambda row: id_key(row["id"])) -> set:
    """`key(row)` of each row that --output already holds, from a run with the same settings
    (`identity`, as JSON stores it); a new output gets its settings file first."""
    from piilab.io import check_output_file, done_ids, read_json, write_json

    check_output_file(output, "--output")
    identity = json.loads(json.dumps(identity))
    settings = output.with_name(output.name + ".settings.json")
    if output.exists() and output.stat().st_size:
        if not settings.exists():
            raise PiilabError(f"{output}: exists, without {settings.name}, so it was not written by "
                              f"`piilab {verb} --output`: choose another --output or remove it")
        saved = read_json(settings)
        changed = sorted(k for k in set(saved) | set(identity) if saved.get(k) != identity.get(k))
        if changed:
            raise PiilabError(f"{output}: written with other settings ({', '.join(changed)} differ); "
                              "choose another --output, or remove it and its settings file")
        return done_ids(output, key=key)
    write_json(settings, identity)
    return set()
