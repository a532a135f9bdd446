"""Files dltrain writes into a run folder, and the folder's one-writer lock. Every write is
atomic (a temporary file in the same folder, then ``os.replace``), so a crash mid-write leaves
the previous file whole, and a symlink planted at the destination is replaced, never followed.
A run folder may come from someone else: nothing here reads its files as code."""

from __future__ import annotations

import io
import os
import tempfile
import threading
import time
from contextlib import ExitStack, contextmanager, suppress
from pathlib import Path

from dltrain.errors import DltrainError

LOCK = ".lock"
TEMPORARY_SUFFIX = ".tmp"
LOG = "dltrain.log"  # a run's console output
# Sub-folders of a run whose files dltrain writes too (the fold job's config and overrides).
_WRITTEN_SUBFOLDERS = (".hydra",)


def _file_mode() -> int:
    # mkstemp makes 0600 files; a run folder is shared like any other output, so the files get
    # the mode open() would give them (0666 less the umask), read once while nothing else runs.
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


_MODE = _file_mode()


def write_atomic(path: Path, content) -> None:
    """Write ``content`` (bytes, str, or a callable that writes to a binary stream) to ``path``."""
    path = Path(path)
    if path.is_dir() and not path.is_symlink():  # os.replace cannot put a file in a folder's place
        raise DltrainError(f"Cannot write {str(path)!r}: a folder is in its place; move that folder away "
                           f"(or write elsewhere) and try again.")
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMPORARY_SUFFIX)
    except OSError as error:
        raise _naming(error, path, None) from None
    try:
        with suppress(OSError):  # a file system without modes (FAT, some shares) refuses it
            os.fchmod(handle, _MODE)
        with os.fdopen(handle, "wb") as stream:
            if callable(content):
                content(stream)
            else:
                stream.write(content.encode() if isinstance(content, str) else content)
        os.replace(temporary, path)  # replaces a link at ``path`` itself, not the link's target
    except BaseException as error:  # a second Ctrl-C too: no half-written file stays behind
        Path(temporary).unlink(missing_ok=True)
        cause = _os_error(error) if isinstance(error, Exception) else None  # Ctrl-C stays Ctrl-C
        if cause is error:
            raise _naming(error, path, temporary) from None
        if cause is not None:  # torch.save turns a failed write() into a RuntimeError
            raise _naming(cause, path, temporary) from error
        raise


def open_append(path: Path):
    """``path`` opened to append text (created with the user's umask), never through a planted
    symlink or into a pipe or device: such a thing at ``path`` is replaced by a fresh file. rich
    flushes each print at once, one ``write(2)`` on an O_APPEND descriptor, so writers that
    share the file (Hydra's job log) never overwrite each other."""
    import errno
    import stat

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with suppress(FileNotFoundError):
        mode = os.lstat(path).st_mode
        if not stat.S_ISREG(mode) and not stat.S_ISDIR(mode):
            path.unlink()
    handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | getattr(os, "O_NOFOLLOW", 0)
                     | getattr(os, "O_NONBLOCK", 0), 0o666)
    if not stat.S_ISREG(os.fstat(handle).st_mode):  # something planted after the check
        os.close(handle)
        raise OSError(errno.EINVAL, "not a regular file")
    os.set_blocking(handle, True)
    return os.fdopen(handle, "a", encoding="utf-8")


class RunLog(io.TextIOBase):
    """A run folder's dltrain.log as a text stream. ``held``: what is written stays in memory
    until ``release()`` appends it and opens the file for the rest (a resume holds its output
    until its checks passed, so a refused resume leaves the folder as it was); never released,
    it is dropped."""

    def __init__(self, path: Path, *, held: bool = False):
        self.path = Path(path)
        self._held: io.StringIO | None = io.StringIO() if held else None
        self._stream = None if held else open_append(self.path)

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        if self._stream is not None:
            return self._stream.write(text)
        return self._held.write(text) if self._held is not None else len(text)

    def flush(self) -> None:
        if self._stream is not None:
            self._stream.flush()

    def release(self) -> None:
        """Append what was held and write on into the file (OSError when it cannot be opened)."""
        if self._stream is None and self._held is not None:
            held, self._held = self._held.getvalue(), None
            self._stream = open_append(self.path)
            self._stream.write(held)
            self._stream.flush()

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()
            self._stream = None
        super().close()


class RunLogs:
    """The logs ``console_log`` writes: ``release()`` them once a held run may write."""

    def __init__(self, out, logs: list[RunLog]):
        self.out, self.logs = out, logs

    def release(self) -> None:
        for log in self.logs:
            try:
                log.release()
            except OSError as error:
                _unlogged(self.out, log.path, error)


def _unlogged(out, path: Path, error: OSError) -> None:
    out.print(f"[yellow]note:[/yellow] {path} cannot be written ({error.strerror or error}); the "
              f"output is not logged there.")


@contextmanager
def console_log(out, *folders: Path, held: bool = False):
    """While inside, what ``out`` (dltrain.console's RunConsole) prints is also appended to each
    folder's dltrain.log (``held``: see RunLog; a plain rich Console logs nothing). A log that
    cannot be opened is said once and left out, as the run matters more than its log. Yields
    the RunLogs."""
    with ExitStack() as stack:
        logs = []
        for folder in folders:
            try:
                logs.append(stack.enter_context(RunLog(Path(folder) / LOG, held=held)))
            except OSError as error:
                _unlogged(out, Path(folder) / LOG, error)
        if logs and hasattr(out, "logging_to"):
            stack.enter_context(out.logging_to(*logs))
        yield RunLogs(out, logs)


def _os_error(error: BaseException) -> OSError | None:
    """``error`` itself or the OSError it was raised from (None when neither is one)."""
    while error is not None and not isinstance(error, OSError):
        error = error.__cause__ or error.__context__
    return error


def _naming(error: OSError, path: Path, temporary: str | None) -> OSError:
    """``error`` naming ``path``, the file being written, where it names none (a failed write()
    or close(): a full disk) or names the temporary file: what a user can act on."""
    unnamed = error.filename is None or temporary is None or error.filename == temporary
    if error.errno is None or not unnamed:
        return error
    named = OSError(error.errno, error.strerror, str(path))  # the errno's own subclass (PermissionError, ...)
    named.__traceback__ = error.__traceback__
    return named


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


def json_number(value) -> float | None:
    """A number read from a record (a JSON value) as a float; None for anything else: a bool, a
    string, null, an integer too large for a float."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        return float(value)
    except OverflowError:
        return None


def append_text(path: Path, text: str) -> bool:
    """Add ``text`` to the end of ``path`` in one write when it is a plain file of its own: not a
    link (never followed), not a hard link to another name, not a pipe. False when it is not, or
    when the write came out short: nothing more is written, and the caller writes the whole file
    anew with write_atomic (which replaces whatever is there)."""
    import stat

    flags = os.O_WRONLY | os.O_APPEND | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0)
    try:
        handle = os.open(path, flags)
    except OSError:  # missing, a link (ELOOP), a pipe with no reader, not writable
        return False
    try:
        info = os.fstat(handle)
        if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
            return False
        data = text.encode()
        return os.write(handle, data) == len(data)
    except OSError:
        return False
    finally:
        os.close(handle)


def copy_file(source: Path, destination: Path) -> None:
    """``source``'s bytes to ``destination``, written as every other file is (shutil.copyfile
    would write through a link planted at ``destination``)."""
    import shutil

    with open(source, "rb") as stream:
        write_atomic(destination, lambda out: shutil.copyfileobj(stream, out))


def remove_file(path: Path) -> None:
    """Delete a file this program wrote (a link planted in its place goes, never its target);
    gone already is fine."""
    Path(path).unlink(missing_ok=True)


def remove_links(folder: Path, patterns) -> list[Path]:
    """Unlink the symlinks among ``folder``'s paths matching ``patterns`` (globs, in order, so a
    linked sub-folder goes before the files under it): for the files another library (Hydra)
    writes with a plain ``open()``, which would follow a link planted in a shared run folder."""
    removed = []
    for pattern in patterns:
        for entry in sorted(Path(folder).glob(pattern)):
            if entry.is_symlink():
                entry.unlink()
                removed.append(entry)
    return removed


def remove_orphan_temporaries(folder: Path) -> list[Path]:
    """Delete the ``.NAME.XXXX.tmp`` files a killed process left in ``folder`` and its .hydra/
    (not in other sub-folders: each run folder cleans its own); returns what was removed. Call
    it holding the folder's lock (RunLock does, when it takes the lock)."""
    removed = []
    for place in (Path(folder), *(Path(folder) / name for name in _WRITTEN_SUBFOLDERS)):
        if place.is_symlink() or not place.is_dir():
            continue
        for entry in place.glob(f".*{TEMPORARY_SUFFIX}"):
            if entry.is_file() or entry.is_symlink():
                entry.unlink(missing_ok=True)
                removed.append(entry)
    return removed


# The locks this process holds: resolved folder -> [descriptor, holds]. A flock belongs to an
# open file description, so a second open of FOLDER/.lock in this process would refuse the
# first; every RunLock of one folder in this process shares one description instead.
_HELD: dict[str, list] = {}
_HELD_GUARD = threading.Lock()


class RunLock:
    """An exclusive ``flock`` on ``FOLDER/.lock`` while a process trains or writes the run; the
    operating system releases it when the process ends, however it ends. ``acquire`` refuses in
    one sentence when another process holds it; in the process that holds it, it only counts
    (a cross-validation holds its folder while a fold's job in the same process holds it again),
    and the lock goes when the last holder releases. Taking it removes the folder's orphan
    temporary files, left by a process killed mid-write."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self._key: str | None = None

    def acquire(self) -> "RunLock":
        if self._key is not None:
            return self
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            key = str(self.folder.resolve())
        except OSError as error:
            raise self._unwritable(error) from None
        with _HELD_GUARD:
            held = _HELD.get(key)
            if held is not None:
                held[1] += 1
            else:
                _HELD[key] = [self._lock(), 1]
                remove_orphan_temporaries(self.folder)
        self._key = key
        return self

    def _lock(self) -> int:
        import fcntl

        path = self.folder / LOCK
        try:
            if path.is_symlink():  # a planted link would make us open (and create) its target
                path.unlink()
            handle = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
        except OSError as error:
            raise self._unwritable(error) from None
        # locked_by_someone's probe (dltrain runs) holds the lock for microseconds: a writer
        # that meets it tries again for a moment before refusing.
        deadline = time.monotonic() + 0.2
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return handle
            except BlockingIOError:
                if time.monotonic() > deadline:
                    os.close(handle)
                    raise DltrainError(f"The run folder {str(self.folder)!r} is in use by another dltrain "
                                       f"process; wait for it to finish (or stop it) and try again.") from None
                time.sleep(0.01)

    def _unwritable(self, error: OSError) -> DltrainError:
        return DltrainError(f"The run folder {str(self.folder)!r} cannot be written "
                            f"({error.strerror or error}); give a folder you can write to.")

    def release(self) -> None:
        if self._key is None:
            return
        with _HELD_GUARD:
            held = _HELD[self._key]
            held[1] -= 1
            if held[1] == 0:
                os.close(held[0])  # closing the descriptor drops the flock
                del _HELD[self._key]
        self._key = None

    @property
    def held(self) -> bool:
        return self._key is not None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def locked_by_someone(folder: Path) -> bool:
    """Whether a process (this one included) holds ``folder``'s lock: a run whose metrics.json
    says ``running`` while nobody holds it was killed."""
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
