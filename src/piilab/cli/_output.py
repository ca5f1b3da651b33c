"""--output files that a rerun resumes: the rows already there are not done again.

Rows are appended a round at a time and flushed to disk; a line torn by a kill is cut off and
done again (piilab.io.done_ids). The settings that decide the rows are written first to
OUTPUT.settings.json, and a rerun with other settings is refused, so a file never mixes rows of
two runs. The input files' sizes and digests go there too: rows appended to an input (or new
files in an input folder) are resumed, while an input edited or cut short since is refused, since
its rows' answers in the output were found in other texts.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
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


CONTENTS = "input_contents"
"""The settings file's entry for the input files' contents (checked by prefix, not equality)."""


def head_digest(path: Path, size: int) -> str:
    """sha256 of a file's first `size` bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while size > 0:
            block = handle.read(min(size, 1 << 20))
            if not block:
                break
            digest.update(block)
            size -= len(block)
    return digest.hexdigest()


def input_contents(paths: Iterable[Path]) -> dict[str, dict]:
    """Each input file's size and digest, by absolute path (a pipe, read once already, has none)."""
    found = {}
    for path in filter(Path.is_file, paths):
        size = path.stat().st_size
        found[str(path.resolve())] = {"bytes": size, "sha256": head_digest(path, size)}
    return found


def edited_inputs(seen: dict[str, dict]) -> list[str]:
    """The input files recorded in `seen` that are gone, shorter, or other in the bytes recorded:
    appending to a file keeps its recorded start, so only a file edited or cut short is named."""
    edited = []
    for name, was in seen.items():
        path = Path(name)
        if not path.is_file() or path.stat().st_size < was["bytes"] or \
                head_digest(path, was["bytes"]) != was["sha256"]:
            edited.append(name)
    return edited


def resumed(output: Path, identity: dict, verb: str, key=lambda row: id_key(row["id"]),
            inputs: Iterable[Path] = (), earlier: dict | None = None) -> set:
    """`key(row)` of each row that --output already holds, from a run with the same settings
    (`identity`, as JSON stores it) over the same `inputs` files, or longer ones; a new output
    gets its settings file first. `earlier` names settings an older piilab wrote otherwise for
    the same run (a value it wrote, taken as the identity's)."""
    from piilab.io import check_output_file, done_ids, read_json, write_json

    check_output_file(output, "--output")
    identity = json.loads(json.dumps(identity))
    settings = output.with_name(output.name + ".settings.json")
    contents = input_contents(inputs)
    if not (output.exists() and output.stat().st_size):
        write_json(settings, {**identity, CONTENTS: contents})
        return set()
    if not settings.exists():
        raise PiilabError(f"{output}: exists, without {settings.name}, so it was not written by "
                          f"`piilab {verb} --output`: choose another --output or remove it")
    saved = read_json(settings)
    seen = saved.pop(CONTENTS, {})  # none in a file of a piilab before the fifteenth session
    for name, value in (earlier or {}).items():
        if name in saved and saved[name] == value:
            saved[name] = identity[name]
    changed = sorted(k for k in set(saved) | set(identity) if saved.get(k) != identity.get(k))
    if changed:
        raise PiilabError(f"{output}: written with other settings ({', '.join(changed)} differ); "
                          "choose another --output, or remove it and its settings file")
    edited = edited_inputs(seen)
    if edited:
        raise PiilabError(f"{output}: {edited[0]} was edited, cut short or removed since rows were "
                          "written from it (rows appended to an input resume, others do not): "
                          "choose another --output, or remove it and its settings file")
    if contents != seen:  # inputs that grew, or new files: what the next rerun checks
        write_json(settings, {**saved, CONTENTS: contents})
    return done_ids(output, key=key)
