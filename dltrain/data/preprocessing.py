"""The saved preprocessing of a run, as data and never as code: ``preprocessing.json`` (the kind,
its options, columns, categories, vocabulary and shapes; for a regression target, its transform;
how the data file was read: header, target column, task) and, when the kind has arrays,
``preprocessing.npz`` (float64 means and scales, read with ``allow_pickle=False``). A run folder
may come from anyone, so ``load_preprocessing`` checks every value and refuses anything else in
one sentence. The README's "The saved preprocessing" section documents the format."""

from __future__ import annotations

import json
import math
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dltrain.data.sequence import SeriesPreprocessor
from dltrain.data.spec import TASKS
from dltrain.data.tabular import TabularPreprocessor
from dltrain.data.target import TargetTransform
from dltrain.data.text import TextPreprocessor
from dltrain.data.vision import ImagePreprocessor
from dltrain.errors import DltrainError
from dltrain.files import write_atomic

FILE = "preprocessing.json"
ARRAYS = "preprocessing.npz"
# What dltrain wrote before the saved preprocessing was data: a pickle, which runs code when read.
LEGACY_PICKLE = "preprocessor.pkl"
FORMAT = "dltrain-preprocessing"
# 2 added "target" (the regression target's transform), 3 "data" (how the data file was read);
# files of every earlier version are read too.
VERSION = 3
# The JSON names its preprocessor by one of these kinds, never by a class or module path.
KINDS = {
    "tabular": TabularPreprocessor,
    "text": TextPreprocessor,
    "series": SeriesPreprocessor,
    "image": ImagePreprocessor,
}
MAX_INTEGER = 2**31 - 1
MAX_FILE_BYTES = 256 << 20
_REQUIRED = object()


def save_preprocessing(folder: Path, preprocessor, target: TargetTransform | None = None,
                       reading: dict | None = None) -> None:
    """Write ``preprocessor``'s fitted state (and ``target``, a regression target's fitted
    transform; ``reading``, how the data file was read: Source.reading) into ``folder``: the
    arrays first, then the JSON that names them, so a reader never finds a JSON without its
    arrays."""
    kind = next((k for k, cls in KINDS.items() if type(preprocessor) is cls), None)
    if kind is None:
        raise TypeError(f"{type(preprocessor).__qualname__} is not a preprocessor kind of {FILE} ({', '.join(KINDS)})")
    state, arrays = preprocessor.state()
    folder = Path(folder)
    if arrays:
        arrays = {name: np.ascontiguousarray(value, dtype=np.float64) for name, value in arrays.items()}
        write_atomic(folder / ARRAYS, lambda stream: np.savez(stream, **arrays))
    else:
        (folder / ARRAYS).unlink(missing_ok=True)  # an earlier kind's arrays would be misread as this one's
    document = {"format": FORMAT, "version": VERSION, "kind": kind, "state": state}
    if target is not None:
        document["target"] = target.state()
    if reading:
        document["data"] = {key: reading[key] for key in READING if key in reading}
    write_atomic(folder / FILE, json.dumps(document, indent=1, allow_nan=False) + "\n")


# What "data" may hold: how the data file was read at fit time (each optional).
READING = ("header", "target", "task")


@dataclass
class Saved:
    """What a run folder's preprocessing holds: the preprocessor, the regression target's
    transform (None when the run's target is not a regression one, or from before version 2), and
    how the data file was read (``header``, ``target``, ``task``; empty when the data is no file,
    or from before version 3)."""

    preprocessor: object
    target: TargetTransform | None = None
    reading: dict = field(default_factory=dict)


def load_preprocessing(folder: Path):
    """The preprocessor saved in ``folder``, rebuilt from data; DltrainError for anything wrong."""
    return load_saved_run(folder).preprocessor


def load_saved(folder: Path) -> tuple[object, TargetTransform | None]:
    """The preprocessor and the regression target's transform saved in ``folder`` (see Saved)."""
    saved = load_saved_run(folder)
    return saved.preprocessor, saved.target


def load_saved_run(folder: Path) -> Saved:
    """Everything the preprocessing files in ``folder`` hold, rebuilt from data; DltrainError for
    anything wrong."""
    folder = Path(folder)
    path = folder / FILE
    if not os.path.lexists(path):
        if os.path.lexists(folder / LEGACY_PICKLE):
            raise DltrainError(
                f"{str(folder)!r} holds its preprocessing as {LEGACY_PICKLE}, a pickle that an older "
                f"dltrain wrote and that could run code if read; if you made this run or trust it, "
                f"re-save it as data with: dltrain migrate {folder} --trust")
        raise DltrainError(f"{str(folder)!r} has no {FILE}; eval, predict and resume need the run folder "
                           f"that a checkpoint was trained in.")
    with _open_file(path) as stream:
        document = _parse_json(path, stream.read(MAX_FILE_BYTES + 1))
    with _Arrays(folder / ARRAYS) as arrays:
        top = Fields(document, path, arrays)
        top.text("format", choices=(FORMAT,))
        version = top.integer("version", minimum=1)
        if version > VERSION:
            raise DltrainError(f"{str(path)!r} has format version {version}, from a newer dltrain; this "
                               f"dltrain reads version {VERSION}, so upgrade dltrain to use this run.")
        kind = top.text("kind", choices=tuple(KINDS))
        preprocessor = KINDS[kind].from_state(top.object("state"))
        target = TargetTransform.from_state(top.object("target")) if top.has("target") else None
        reading = _reading(top.object("data")) if top.has("data") else {}
        top.done()
        arrays.done()
    return Saved(preprocessor, target, reading)


def _reading(fields: "Fields") -> dict:
    reading = {}
    if fields.has("header"):
        reading["header"] = fields.boolean("header")
    if fields.has("target"):
        reading["target"] = fields.text("target")
    if fields.has("task"):
        reading["task"] = fields.text("task", choices=TASKS)
    return reading


class Fields:
    """One JSON object of the file, read strictly: each getter checks its key's type and range,
    and ``done`` refuses keys no getter read. A failure is one sentence naming the file, the
    key's path (``state.columns[2].name``) and what would be valid."""

    def __init__(self, data, path: Path, arrays: "_Arrays", where: str = ""):
        self._path, self._arrays, self._where = path, arrays, where
        if not isinstance(data, dict):
            self._refuse(where.rstrip(".") or "the file", "a JSON object", data)
        self._data = data
        self._read: set[str] = set()
        self._children: list[Fields] = []

    def invalid(self, key: str, valid: str, got) -> None:
        """Refuse ``key`` (a path below this object): it must be ``valid`` but is ``got``."""
        self._refuse(self._where + key, valid, got)

    def _refuse(self, key: str, valid: str, got) -> None:
        raise DltrainError(f"The saved preprocessing {str(self._path)!r} is damaged or was not written by "
                           f"dltrain: {key} must be {valid}, got {_shown(got)}.")

    def has(self, key: str) -> bool:
        return key in self._data

    def _get(self, key: str, default=_REQUIRED):
        self._read.add(key)
        if key in self._data:
            return self._data[key]
        if default is _REQUIRED:
            self.invalid(key, "present", "nothing")
        return default

    def boolean(self, key: str, default=_REQUIRED) -> bool:
        value = self._get(key, default)
        if not isinstance(value, bool):
            self.invalid(key, "true or false", value)
        return value

    def integer(self, key: str, *, minimum: int = 0, maximum: int | None = None, value=_REQUIRED) -> int:
        value = self._get(key) if value is _REQUIRED else value
        maximum = MAX_INTEGER if maximum is None else maximum
        if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
            self.invalid(key, f"an integer from {minimum} to {maximum}", value)
        return value

    def number(self, key: str, *, positive: bool = False, value=_REQUIRED) -> float:
        value = self._get(key) if value is _REQUIRED else value
        if (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
                or (positive and value <= 0)):
            self.invalid(key, "a finite number" + (" above 0" if positive else ""), value)
        return float(value)

    def text(self, key: str, *, choices: tuple[str, ...] | None = None) -> str:
        value = self._get(key)
        if not isinstance(value, str) or (choices is not None and value not in choices):
            self.invalid(key, f"one of {', '.join(map(repr, choices))}" if choices else "a string", value)
        return value

    def _list(self, key: str, count: int | None) -> list:
        value = self._get(key)
        if not isinstance(value, list) or (count is not None and len(value) != count):
            self.invalid(key, f"a list of {count} items" if count is not None else "a list", value)
        return value

    def integers(self, key: str, *, count: int, minimum: int = 0) -> list[int]:
        return [self.integer(f"{key}[{i}]", minimum=minimum, value=v) for i, v in enumerate(self._list(key, count))]

    def numbers(self, key: str, *, count: int, positive: bool = False) -> list[float]:
        return [self.number(f"{key}[{i}]", positive=positive, value=v) for i, v in enumerate(self._list(key, count))]

    def texts(self, key: str, *, unique: bool = False) -> list[str]:
        values = self._list(key, None)
        seen: set[str] = set()
        for index, value in enumerate(values):
            if not isinstance(value, str):
                self.invalid(f"{key}[{index}]", "a string", value)
            if unique and value in seen:
                self.invalid(f"{key}[{index}]", f"a string not already in {key}", value)
            seen.add(value)
        return values

    def object(self, key: str) -> "Fields":
        child = Fields(self._get(key), self._path, self._arrays, f"{self._where}{key}.")
        self._children.append(child)
        return child

    def objects(self, key: str) -> list["Fields"]:
        children = [Fields(v, self._path, self._arrays, f"{self._where}{key}[{i}].")
                    for i, v in enumerate(self._list(key, None))]
        self._children.extend(children)
        return children

    def array(self, name: str, length: int, *, positive: bool = False):
        """The float64 array ``name`` of ``length`` finite values from preprocessing.npz."""
        return self._arrays.get(name, length, positive)

    def done(self) -> None:
        unknown = [key for key in self._data if key not in self._read]
        if unknown:
            self.invalid(str(unknown[0]), "absent, as it is no key of this format", self._data[unknown[0]])
        for child in self._children:
            child.done()


class _Arrays:
    """preprocessing.npz, opened on the first array asked for; every member is checked against
    the size its JSON implies before it is read, so a hostile file cannot make us allocate."""

    def __init__(self, path: Path):
        self.path = path
        self._stream = self._archive = None
        self._read: set[str] = set()

    def __enter__(self) -> "_Arrays":
        return self

    def __exit__(self, *exc) -> None:
        if self._archive is not None:
            self._archive.close()
        if self._stream is not None:
            self._stream.close()

    def _damaged(self, detail: str) -> DltrainError:
        return DltrainError(f"The saved preprocessing {str(self.path)!r} is damaged or was not written by "
                            f"dltrain: {detail}.")

    def _open(self):
        import zipfile

        if self._archive is None:
            if not os.path.lexists(self.path):
                raise self._damaged(f"the file is missing, but {FILE} beside it needs its arrays")
            self._stream = _open_file(self.path)
            try:
                self._archive = zipfile.ZipFile(self._stream)
            except Exception as error:  # a foreign file fails zipfile in many ways
                raise self._damaged(f"it is not a numpy .npz archive ({type(error).__name__})") from None
        return self._archive

    def get(self, name: str, length: int, positive: bool) -> np.ndarray:
        archive = self._open()
        member = f"{name}.npy"
        try:
            info = archive.getinfo(member)
        except KeyError:
            raise self._damaged(f"it lacks the array {name!r}") from None
        if info.file_size > 8 * length + 4096:  # the values and a .npy header
            raise self._damaged(f"the array {name!r} is larger than the {length} values it must hold")
        try:
            with archive.open(info) as stream:
                array = np.lib.format.read_array(stream, allow_pickle=False)
        except Exception as error:  # a truncated or foreign member fails numpy in many ways
            raise self._damaged(f"the array {name!r} cannot be read ({type(error).__name__})") from None
        if array.dtype != np.float64 or array.shape != (length,):
            raise self._damaged(f"the array {name!r} must be {length} float64 values, got {array.dtype} "
                                f"values of shape {array.shape}")
        if not np.isfinite(array).all() or (positive and not (array > 0).all()):
            raise self._damaged(f"the array {name!r} must hold finite numbers" + (" above 0" if positive else ""))
        self._read.add(member)
        return array

    def done(self) -> None:
        if self._archive is not None:
            unknown = [n for n in self._archive.namelist() if n not in self._read]
            if unknown:
                raise self._damaged(f"it holds {unknown[0]!r}, which is no array of this preprocessing")


def _open_file(path: Path):
    """``path`` opened for reading if it is a regular file of at most MAX_FILE_BYTES, not a link
    (a planted link would read another file) and not a device or pipe (which could block)."""
    if path.is_symlink():
        raise DltrainError(f"{str(path)!r} is a symbolic link; dltrain reads a run folder's own files only.")
    try:
        handle = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    except OSError as error:
        raise DltrainError(f"{str(path)!r} cannot be read ({error.strerror}).") from None
    info = os.fstat(handle)
    if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_FILE_BYTES:
        os.close(handle)
        raise DltrainError(f"{str(path)!r} is not a regular file of at most {MAX_FILE_BYTES >> 20} MiB; "
                           f"it is damaged or was not written by dltrain.")
    return os.fdopen(handle, "rb")


def _parse_json(path: Path, data: bytes):
    def refuse_constant(name):
        raise ValueError(f"{name} is not a number JSON allows")

    try:
        return json.loads(data, parse_constant=refuse_constant)
    except (ValueError, RecursionError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise DltrainError(f"The saved preprocessing {str(path)!r} is not valid JSON ({reason[:100]}); it "
                           f"is damaged or was not written by dltrain.") from None


def _shown(value) -> str:
    """A value as a sentence quotes it: short, whatever its size."""
    if isinstance(value, dict):
        return f"an object of {len(value)} keys"
    if isinstance(value, list):
        return f"a list of {len(value)} items"
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:57]}..."
