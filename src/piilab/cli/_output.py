"""--output files that a rerun resumes: the rows already there are not done again.

Rows are appended a round at a time and flushed to disk; a line torn by a kill is cut off and
done again (piilab.io.written_rows). The settings that decide the rows are written first to
OUTPUT.settings.json, and a rerun with other settings is refused, so a file never mixes rows of
two runs. Each row carries a digest of the input it was made from (its text or prompt;
piilab.io.row_digest): a rerun does again the rows whose input was edited since, does the new
ones, and keeps the rest.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from piilab.errors import PiilabError
from piilab.io import DIGEST, check_output_file, id_key, written_alone

log = logging.getLogger(__name__)


@contextmanager
def held(output: str | None) -> Iterator[None]:
    """An --output checked, then held by this process alone for the block (nothing to hold
    without one): a second piilab on the same file is refused, not mixed in."""
    if not output:
        yield
        return
    check_output_file(output, "--output")  # before its lock file is made beside it
    with written_alone(output, "--output"):
        yield


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
"""Where the fifteenth session's settings files held the input files' sizes and digests, before
rows had their own: such a file is checked once, its rows get their digests, and the entry goes."""


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


def resumed(output: Path, identity: dict, verb: str, digests: dict[str, str],
            key=lambda row: id_key(row["id"]), earlier: dict | None = None) -> set:
    """`key(row)` of each row that --output already holds for the input as it is now: written by
    a run with the same settings (`identity`, as JSON stores it) from an input row of the same
    digest (`digests`, by id_key). Rows of edited input rows are taken out of the file, to be done
    again; rows of ids the input no longer has are kept. A new output gets its settings file
    first. `earlier` names settings an older piilab wrote otherwise for the same run (a value it
    wrote, taken as the identity's)."""
    from piilab.io import check_output_file, read_json, write_json, write_jsonl, written_rows

    check_output_file(output, "--output")
    identity = json.loads(json.dumps(identity))
    settings = output.with_name(output.name + ".settings.json")
    if not (output.exists() and output.stat().st_size):
        write_json(settings, identity)
        return set()
    if not settings.exists():
        raise PiilabError(f"{output}: exists, without {settings.name}, so it was not written by "
                          f"`piilab {verb} --output`: choose another --output or remove it")
    saved = read_json(settings)
    seen = saved.pop(CONTENTS, None)
    for name, value in (earlier or {}).items():
        if name in saved and saved[name] == value:
            saved[name] = identity[name]
    changed = sorted(k for k in set(saved) | set(identity) if saved.get(k) != identity.get(k))
    if changed:
        raise PiilabError(f"{output}: written with other settings ({', '.join(changed)} differ); "
                          "choose another --output, or remove it and its settings file")
    edited = edited_inputs(seen or {})
    if edited:
        raise PiilabError(f"{output}: {edited[0]} was edited, cut short or removed since rows were "
                          "written from it by a piilab that did not record each row's input: "
                          "choose another --output, or remove it and its settings file")
    rows = written_rows(output, key)
    kept, dated = rows_for(rows, digests)
    if len(kept) != len(rows) or dated:
        write_jsonl(output, kept)
    if seen is not None:
        write_json(settings, saved)
    redone = len(rows) - len(kept)
    if redone:
        log.warning("%s: %d row(s) made from input rows edited since are done again", output, redone)
    gone = sum(id_key(row["id"]) not in digests for row in kept)
    if gone:
        log.warning("%s: %d row(s) of ids the input no longer has are kept", output, gone)
    return {key(row) for row in kept}


def rows_for(rows: list[dict], digests: dict[str, str]) -> tuple[list[dict], int]:
    """The rows that still answer the input (`digests` by id_key), and how many of them were
    given their digest here: a row of a piilab that wrote none was made from the input as it
    is now (as far as it can be checked: edited_inputs), so it gets the current one."""
    kept, dated = [], 0
    for row in rows:
        now = digests.get(id_key(row["id"]))
        if now is not None and DIGEST not in row:
            row, dated = {**row, DIGEST: now}, dated + 1
        if now is None or row[DIGEST] == now:
            kept.append(row)
    return kept, dated
