"""File I/O at the edges: atomic writes, JSON Lines that name the file and line on error."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from piilab.errors import PiilabError

log = logging.getLogger(__name__)
_OWNER = "pid"
# Surrogates are not text: bytes that were not UTF-8 (kept by surrogateescape as U+DC80-DCFF) or
# a JSON escape of a lone surrogate ("\ud800"), which the json module decodes and UTF-8 cannot encode.
_SURROGATE = re.compile("[\ud800-\udfff]")
_UMASK = os.umask(0)
os.umask(_UMASK)


@contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8", buffering: int = -1):
    """Open a temporary file beside `path` and rename it over `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; outputs get the usual mode
    try:
        with os.fdopen(fd, mode, buffering, encoding=None if "b" in mode else encoding) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write `obj` as indented JSON, atomically."""
    with atomic_write(path) as handle:
        json.dump(obj, handle, indent=2, ensure_ascii=False)
        handle.write("\n")


def read_json(path: str | os.PathLike) -> Any:
    """Read a JSON file; a missing or malformed file is a one-line PiilabError."""
    path = Path(path)
    try:
        with path.open(encoding="utf-8") as handle:
            return json.load(handle)
    except FileNotFoundError:
        raise PiilabError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise PiilabError(f"{path}: is a folder, not a JSON file") from None
    except UnicodeDecodeError:
        raise PiilabError(f"{path}: not UTF-8 text (a binary file?)") from None
    except json.JSONDecodeError as err:
        raise PiilabError(f"{path}: line {err.lineno}: malformed JSON ({err.msg})") from None


def unreadable_json(err: ValueError | RecursionError) -> str:
    """Why valid-looking JSON could not be read, in words (never the record's text)."""
    if isinstance(err, RecursionError):
        return "nested too deeply"
    if isinstance(err, json.JSONDecodeError):
        return err.msg
    if "integer string conversion" in str(err):  # Python's guard against quadratic int parsing
        return f"an integer of more than {sys.get_int_max_str_digits()} digits"
    return str(err)


def has_bad_utf8(value: Any) -> bool:
    """Whether any string in a decoded value holds a surrogate (bad UTF-8 or a lone surrogate escape)."""
    if isinstance(value, str):
        return _SURROGATE.search(value) is not None
    if isinstance(value, list):
        return any(has_bad_utf8(v) for v in value)
    if isinstance(value, dict):
        return any(has_bad_utf8(k) or has_bad_utf8(v) for k, v in value.items())
    return False


def write_jsonl(path: str | os.PathLike, rows: Iterable[dict]) -> int:
    """Write rows as JSON Lines, atomically; returns the number written."""
    n = 0
    with atomic_write(path) as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
            n += 1
    return n


def numbered_jsonl(path: str | os.PathLike) -> Iterator[tuple[int, Any]]:
    """(line number, value) of each non-blank line; a line that is not JSON gives a PiilabError
    naming the file and line as its value, for a reader that skips and counts bad lines."""
    path = Path(path)
    if not path.is_file():
        raise PiilabError(f"{path}: {'is a folder, not a file' if path.is_dir() else 'file not found'}")
    with path.open("rb") as handle:
        for lineno, raw in enumerate(handle, 1):
            try:
                line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
            except UnicodeDecodeError:
                yield lineno, PiilabError(f"{path}: line {lineno}: not UTF-8 text (a binary file?)")
                continue
            if not line.strip():
                continue
            try:  # (an int of 4,300+ digits or deep nesting is a ValueError or RecursionError)
                value = json.loads(line)
                bad = has_bad_utf8(value)  # recursive: nesting json just took can still be too deep
            except (ValueError, RecursionError) as err:
                yield lineno, PiilabError(f"{path}: line {lineno}: malformed JSON ({unreadable_json(err)})")
                continue
            # A lone surrogate escape decodes, but no tokenizer or UTF-8 file takes it.
            yield lineno, PiilabError(f"{path}: line {lineno}: not valid Unicode (a lone surrogate "
                                      "escape)") if bad else value


def iter_jsonl(path: str | os.PathLike) -> Iterator[dict]:
    """Stream JSON Lines; a malformed line is a PiilabError naming the file and line."""
    for _, value in numbered_jsonl(path):
        if isinstance(value, PiilabError):
            raise value
        yield value


def _nearest_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_output_dir(path: str | os.PathLike, flag: str) -> None:
    """Refuse, before any work is done, an output folder that is a file or cannot be written.

    The folder is created (as the work would create it) and a probe file written in it and
    removed: root passes os.access everywhere, and places like /proc refuse even root.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise PiilabError(f"{path}: {flag} names a file; give a folder (it is created if missing)")
    existing = _nearest_existing(path)
    if not existing.is_dir():
        raise PiilabError(f"{path}: {flag}: {existing} is a file, so this folder cannot be created")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise PiilabError(f"{path}: {flag}: cannot write in {existing} (permission denied)")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise PiilabError(f"{path}: {flag}: cannot write here ({err.strerror or err})") from None
    _probe(path, path, flag)


@contextmanager
def output_folder(path: str | os.PathLike, flag: str) -> Iterator[Path]:
    """check_output_dir, then the work within; if the work fails, the folders the check created
    (the output folder and any parents it lacked) are removed again while they are still empty,
    so that a failed command leaves nothing behind."""
    path = Path(path)
    existing = _nearest_existing(path)
    try:
        check_output_dir(path, flag)
        yield path
    except BaseException:
        made = [path, *path.parents[:len(path.parts) - len(existing.parts) - 1]]
        for folder in made if existing != path else []:
            try:
                folder.rmdir()
            except OSError:  # not empty (the work wrote something, which stays), or never made
                break
        raise


def _probe(folder: Path, path: Path, flag: str) -> None:
    """Write and remove a file in `folder`, or refuse `path`: root passes os.access everywhere,
    and places like /proc and /sys refuse even root."""
    try:
        fd, probe = tempfile.mkstemp(prefix=".write-test.", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise PiilabError(f"{path}: {flag}: cannot write here ({err.strerror or err})") from None


def give_usual_modes(folder: str | os.PathLike) -> None:
    """Give a folder written by piilab, and everything in it, the modes outputs get (0777 &
    ~umask for folders, 0666 & ~umask for files): mkdtemp makes 0700 folders and safetensors
    writes 0600 files, which other users of a shared model folder could not read."""
    folder = Path(folder)
    for entry in [folder, *folder.rglob("*")]:
        if not entry.is_symlink():
            os.chmod(entry, (0o777 if entry.is_dir() else 0o666) & ~_UMASK)


@contextmanager
def replaced_whole(path: str | os.PathLike) -> Iterator[Path]:
    """A scratch folder beside `path` for the block to fill: when the block ends, it replaces
    `path` (removed first if there); if the block fails, it is removed. No reader ever sees a
    half-written folder at `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        yield scratch
        if path.exists():
            shutil.rmtree(path)
        scratch.rename(path)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def check_output_file(path: str | os.PathLike, flag: str) -> None:
    """Refuse, before any work is done, an output file that could not be written: a folder, or a
    place this process cannot create files in (the work would be lost at the end; tried with a
    probe file, as check_output_dir does)."""
    path = Path(path)
    if path.is_dir():
        raise PiilabError(f"{path}: {flag} names a folder; give a file name")
    parent = _nearest_existing(path.parent)
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise PiilabError(f"{path}: {flag}: cannot write here")
    _probe(parent, path, flag)


def append_jsonl(path: str | os.PathLike, row: dict) -> None:
    """Append one row and flush it to disk, so an interrupted run keeps every finished line."""
    append_lines(path, [json.dumps(row, ensure_ascii=False)])


def append_lines(path: str | os.PathLike, lines: Iterable[str]) -> None:
    """Append lines (each without its newline) and flush them to disk at once."""
    with open(path, "a", encoding="utf-8") as handle:
        handle.writelines(line + "\n" for line in lines)
        handle.flush()
        os.fsync(handle.fileno())


# ---------------------------------------------------------------- resumable outputs


def id_key(id_) -> str:
    """An id as resuming compares it: its JSON (so 7 and "7" stay apart, and any JSON value works)."""
    return json.dumps(id_, sort_keys=True, ensure_ascii=False)


DIGEST = "input_digest"
"""An output row's digest of the input row it was made from (row_digest)."""


def row_digest(value: str) -> str:
    """The first 16 hex digits of the SHA-256 of an input row's text or prompt (UTF-8): enough
    to tell an edited row, and the output holds a hash, not the text."""
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def done_ids(path: Path, key: Callable[[dict], Any] = lambda row: row["id"]) -> set:
    """`key(row)` (default: its "id") of every row already written to a resumable JSONL output."""
    return {key(row) for row in written_rows(path, key)}


def written_rows(path: Path, key: Callable[[dict], Any] = lambda row: row["id"]) -> list[dict]:
    """The complete rows of a resumable JSONL output, each with a `key`. A torn last line (a run
    killed mid-write) is cut off, so it is done again."""
    if not path.exists():
        return []
    rows, good, lineno = [], 0, 0
    with path.open("rb") as handle:
        for lineno, line in enumerate(handle, 1):
            if not line.endswith(b"\n"):
                break  # killed mid-write: the partial line is redone
            try:
                row = json.loads(line)
                key(row)
            except (ValueError, KeyError, TypeError):
                break
            rows.append(row)
            good += len(line)
    if good != path.stat().st_size:
        # A torn last line is routine after a kill; anything else was garbage, and the user
        # should know that what follows it is done again.
        log.warning("%s: line %d is not a complete output row; it and every line after it are redone",
                    path, lineno)
        with path.open("r+b") as handle:
            handle.truncate(good)
    return rows


def clear_stale_scratch(out: Path, prefix: str) -> None:
    """Remove the scratch folders (`prefix`*) a killed run left in `out`, saying so; a live
    run's folder is an error (two runs must not write one folder)."""
    if out.exists() and not out.is_dir():
        raise PiilabError(f"{out}: --out names a file; give a folder (it is created if missing)")
    for folder in sorted(out.glob(prefix + "*")) if out.is_dir() else ():
        try:
            pid = int((folder / _OWNER).read_text())
        except (OSError, ValueError):
            pid = None
        if pid is not None and _owner_alive(folder / _OWNER, pid):
            raise PiilabError(f"{out}: another run (pid {pid}) is writing here; wait for it or use another --out")
        size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
        shutil.rmtree(folder, ignore_errors=True)
        log.warning("%s: removed %.1f MB of scratch files left by an interrupted run", folder, size / 1e6)


def _owner_alive(owner: Path, pid: int) -> bool:
    """Whether the run that marked `owner` still runs: it holds the file's lock while it does (the
    kernel lets go when it dies, so a pid reused after a reboot is no owner). Without advisory
    locks (Windows), whether a process of that id lives."""
    try:
        import fcntl
    except ImportError:
        return _alive(pid)
    try:
        with owner.open("r") as handle:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    return False


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's live process
    return True


@contextmanager
def scratch_dir(out: Path, prefix: str) -> Iterator[str]:
    """A scratch folder in `out`, marked with this process's id and removed afterwards; an
    unwritable `out` is a one-line error before any work is done."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        scratch = tempfile.TemporaryDirectory(prefix=prefix, dir=out)
        owner = (Path(scratch.name) / _OWNER).open("w")
        owner.write(str(os.getpid()))
        owner.flush()
    except OSError as err:
        raise PiilabError(f"{out}: cannot write here ({err.strerror or err})") from None
    with owner, scratch as tmp:
        _hold(owner)  # the mark of a live run: `_owner_alive`
        yield tmp


def _hold(handle) -> None:
    """Lock an open file for as long as it stays open (not on Windows: no advisory locks)."""
    try:
        import fcntl
    except ImportError:
        return
    fcntl.flock(handle, fcntl.LOCK_EX)


@contextmanager
def written_alone(path: str | os.PathLike, flag: str) -> Iterator[None]:
    """Hold an output's lock (a file's, or a folder's) for the block: a second piilab writing the
    same output at the same time is refused, as its rows would mix with this one's (or its
    settings replace this one's). The lock is an advisory lock on `.NAME.lock` beside the output,
    a small file that stays; a killed process releases it. The caller checks the output itself."""
    path = Path(path)
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks; a user there keeps outputs apart by hand
        yield
        return
    lock = path.with_name(f".{path.name}.lock")
    try:
        lock.parent.mkdir(parents=True, exist_ok=True)
        handle = lock.open("a")
    except OSError as err:
        raise PiilabError(f"{path}: {flag}: cannot write here ({err.strerror or err})") from None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise PiilabError(f"{path}: another piilab is writing this {flag} now: wait for it to "
                              f"end, or choose another {flag}") from None
        yield
