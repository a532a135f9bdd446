"""Files dltrain writes into a run folder, and the folder's one-writer lock. Every write is
atomic (a temporary file in the same folder, then ``os.replace``), so a crash mid-write leaves
the previous file whole, and a symlink planted at the destination is replaced, never followed.
A run folder may come from someone else: nothing here reads its files as code."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from dltrain.errors import DltrainError

LOCK = ".lock"
TEMPORARY_SUFFIX = ".tmp"


def write_atomic(path: Path, content) -> None:
    """Write ``content`` (bytes, str, or a callable that writes to a binary stream) to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMPORARY_SUFFIX)
    try:
        with os.fdopen(handle, "wb") as stream:
            if callable(content):
                content(stream)
            else:
                stream.write(content.encode() if isinstance(content, str) else content)
        os.replace(temporary, path)  # replaces a link at ``path`` itself, not the link's target
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_json(path: Path, data) -> None:
    import json

    write_atomic(path, json.dumps(data, indent=2, allow_nan=True))


def write_csv(path: Path, frame) -> None:
    """A pandas DataFrame as CSV, without its index."""
    write_atomic(path, frame.to_csv(index=False))


def read_json(path: Path):
    """The JSON value of a run folder's file (metrics.json, cv_summary.json, ...), or None when it
    holds none that can be read: missing, a folder, a device or a pipe (never opened: reading one
    may block or never end), not UTF-8 JSON, or nested too deep to parse. Huge numbers and NaN
    come back as Python numbers: what the value holds is the caller's to check."""
    import json

    path = Path(path)
    try:
        return json.loads(path.read_bytes()) if path.is_file() else None
    except (OSError, ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return None


def read_json_object(path: Path) -> dict | None:
    """``read_json``, when the value is a JSON object (what every record dltrain writes is)."""
    value = read_json(path)
    return value if isinstance(value, dict) else None


def remove_orphan_temporaries(folder: Path) -> list[Path]:
    """Delete the ``.NAME.XXXX.tmp`` files a killed process left in ``folder`` (not below it: each
    run folder cleans its own); returns what was removed. Call it holding the folder's lock."""
    removed = []
    for entry in Path(folder).glob(f".*{TEMPORARY_SUFFIX}"):
        if entry.is_file() or entry.is_symlink():
            entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed


class RunLock:
    """An exclusive ``flock`` on ``FOLDER/.lock`` while a process trains or writes the run; the
    operating system releases it when the process ends, however it ends. ``acquire`` refuses in
    one sentence when another process (or another open of the same folder) holds it."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self._handle = None

    def acquire(self) -> "RunLock":
        import fcntl

        if self._handle is not None:
            return self
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / LOCK
        if path.is_symlink():  # a planted link would make us open (and create) its target
            path.unlink()
        handle = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(handle)
            raise DltrainError(f"The run folder {str(self.folder)!r} is in use by another dltrain "
                               f"process; wait for it to finish (or stop it) and try again.") from None
        self._handle = handle
        return self

    def release(self) -> None:
        if self._handle is not None:
            os.close(self._handle)  # closing the descriptor drops the flock
            self._handle = None

    @property
    def held(self) -> bool:
        return self._handle is not None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def locked_by_someone(folder: Path) -> bool:
    """Whether a process (this one included, through another lock object) holds ``folder``'s lock."""
    import fcntl

    path = Path(folder) / LOCK
    if not path.is_file() or path.is_symlink():
        return False
    try:
        handle = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return False
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(handle)  # also drops the probe's own lock when it got one
    return False
