"""An image folder decoded once: a pool of worker processes (``data.workers``) decodes and resizes
every image, with a progress bar, into ``CACHE_DIR/images-KEY.npy`` (uint8, N x C x H x W) and its
``.json`` (the labels, classes and shape). KEY digests the file list with each file's size and
modification time, the image size and the channels, so a changed folder gets a new cache; later
runs open the cache in a fraction of a second. The ``.npy`` is written under a unique temporary
name and renamed into place, then the ``.json`` the same way: a killed decode leaves no cache that
looks complete, and two processes building the same cache each rename a whole file. A cache that
fails its checks is rebuilt with a note."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
import warnings
from functools import partial
from pathlib import Path

import numpy as np

from dltrain.console import console
from dltrain.data.pixels import ArrayStore, FileStore, Pixels
from dltrain.errors import DltrainError
from dltrain.files import write_atomic

FORMAT = "dltrain-image-cache"
VERSION = 1
RESAMPLING = "bilinear"  # part of the key: a different resize would make different pixels
# Fewer files decode faster in this process than a pool of processes takes to start.
POOL_MIN_FILES = 200


def decode(file, height: int, width: int, channels: int) -> np.ndarray:
    """One image file resized to height x width as uint8 (channels, height, width)."""
    from PIL import Image, UnidentifiedImageError

    mode = "L" if channels == 1 else "RGB"
    try:
        with warnings.catch_warnings():
            # Pillow only warns up to twice its pixel limit: a bomb is refused either way.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(file) as image:
                resized = image.convert(mode).resize((width, height), Image.Resampling.BILINEAR)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise DltrainError(f"The image {str(file)!r} has more than {Image.MAX_IMAGE_PIXELS:,} pixels, "
                           f"Pillow's limit against decompression bombs; shrink it (dltrain resizes "
                           f"every image to data.image_size anyway) or remove it.") from None
    except (UnidentifiedImageError, OSError) as error:
        raise DltrainError(f"Could not read the image {str(file)!r} ({type(error).__name__}); remove it or "
                           f"replace it with a valid image.") from None
    return np.asarray(resized, dtype=np.uint8).reshape(height, width, channels).transpose(2, 0, 1)


def decode_into(out: np.ndarray, files, height: int, width: int, channels: int, workers: int,
                what: str = "images") -> None:
    """Decode ``files`` into ``out`` (N, channels, height, width), with ``workers`` processes
    when there is more than one, and a progress bar on a terminal. When ``out`` is a memory map
    of a file (the cache being built), each worker writes its rows straight into that file;
    otherwise the workers send their rows back."""
    one = partial(decode, height=height, width=width, channels=channels)
    started = time.perf_counter()
    with _Progress(len(files), what) as progress:
        if workers <= 1 or len(files) < max(POOL_MIN_FILES, 2 * workers):
            for i, file in enumerate(files):
                out[i] = one(file)
                progress.advance()
        else:
            import multiprocessing

            chunk = max(1, min(64, len(files) // (workers * 8)))
            with multiprocessing.get_context().Pool(workers) as pool:
                if isinstance(out, np.memmap) and out.filename:
                    # Sending a row back costs about as much as decoding a small JPEG: write in place.
                    target = (out.filename, out.offset, out.shape)
                    spans = [(start, files[start:start + chunk]) for start in range(0, len(files), chunk)]
                    for done in pool.imap_unordered(partial(_decode_span, target=target, one=one), spans):
                        progress.advance(done)
                else:
                    for i, pixels in enumerate(pool.imap(one, files, chunksize=chunk)):
                        out[i] = pixels
                        progress.advance()
    seconds = time.perf_counter() - started
    if len(files) >= 1000:
        console.print(f"Decoded {len(files):,} images in {seconds:.1f} s ({len(files) / seconds:,.0f} per second, "
                      f"{workers} worker{'s' if workers > 1 else ''}).")


def _decode_span(span, target, one) -> int:
    """In a worker: decode ``span`` (first row, files) into rows of the file-backed array
    ``target`` (path, offset, shape); the number of rows written."""
    start, files = span
    path, offset, shape = target
    rows = np.memmap(path, dtype=np.uint8, mode="r+", offset=offset, shape=shape)
    for i, file in enumerate(files):
        rows[start + i] = one(file)
    del rows  # its pages stay in the file's page cache, flushed by the process that builds the cache
    return len(files)


class _Progress:
    """A transient rich progress bar over the images decoded (silent when output is not a terminal)."""

    def __init__(self, total: int, what: str):
        self.total, self.what, self.bar = total, what, None

    def __enter__(self):
        if console.is_terminal and self.total >= 64:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.bar = Progress(TextColumn(f"decoding {self.what}"), BarColumn(), MofNCompleteColumn(),
                                TimeRemainingColumn(), console=console, transient=True)
            self.bar.start()
            self.task = self.bar.add_task("decode", total=self.total)
        return self

    def advance(self, count: int = 1) -> None:
        if self.bar is not None:
            self.bar.advance(self.task, count)

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.stop()
        return False


def cache_key(files, codes, classes, height: int, width: int, channels: int) -> str:
    """The digest of everything the decoded pixels depend on: each file's path, size and
    modification time, its class, the classes, the size, the channels and the resize."""
    digest = hashlib.sha256(json.dumps([FORMAT, VERSION, RESAMPLING, height, width, channels, list(classes)]).encode())
    for file, code in zip(files, codes):
        info = os.stat(file)
        digest.update(f"\0{os.path.abspath(file)}\0{info.st_size}\0{info.st_mtime_ns}\0{code}".encode())
    return digest.hexdigest()[:32]


def open_or_build(folder: Path, files, codes, classes, height: int, width: int, channels: int, *,
                  cache_dir: str | None, workers: int, memory_max_mb: float) -> Pixels:
    """The folder's pixels: from its cache (built first when missing, changed or damaged) in
    ``cache_dir``, or decoded into memory when ``cache_dir`` is None. A cache over
    ``memory_max_mb`` is read batch by batch from its file; a smaller one is memory-mapped."""
    shape = (len(files), channels, height, width)
    size_mb = int(np.prod(shape)) / 2**20
    if cache_dir is None:
        if size_mb > memory_max_mb:
            raise DltrainError(
                f"data.cache_dir=null keeps the decoded images in memory, but they take {size_mb:,.0f} MiB, "
                f"more than data.memory_max_mb={memory_max_mb:g}; set data.cache_dir to a folder so they "
                f"stream from disk, or raise data.memory_max_mb.")
        pixels = np.empty(shape, dtype=np.uint8)
        decode_into(pixels, files, height, width, channels, workers)
        return Pixels(ArrayStore(pixels))
    root = Path(cache_dir).expanduser()
    key = cache_key(files, codes, classes, height, width, channels)
    data, meta = root / f"images-{key}.npy", root / f"images-{key}.json"
    problem = _check(data, meta, key, shape, codes)
    if problem is not None:
        if problem != "missing":
            console.print(f"[yellow]note:[/yellow] the image cache {data} is damaged ({problem}); rebuilding it.",
                          soft_wrap=True)
        _build(data, meta, key, files, codes, classes, height, width, channels, workers, folder)
        problem = _check(data, meta, key, shape, codes)
        if problem is not None:  # a bug, or the disk changing under us: say what, loudly
            raise RuntimeError(f"the image cache {data} just written fails its check: {problem}")
    offset = _offset(data)
    if size_mb > memory_max_mb:
        return Pixels(FileStore(data, offset, shape))
    return Pixels(ArrayStore(np.memmap(data, dtype=np.uint8, mode="r", offset=offset, shape=shape)))


def _header(stream):
    """(shape, fortran order, dtype) of the .npy ``stream``, left at its first row."""
    version = np.lib.format.read_magic(stream)
    read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    return read(stream)


def _offset(path: Path) -> int:
    with open(path, "rb") as stream:
        _header(stream)
        return stream.tell()


def _check(data: Path, meta: Path, key: str, shape, codes) -> str | None:
    """Why the cache files are not this folder's finished cache ("missing" when absent), or None."""
    if not meta.is_file():
        return "missing"  # the .json is written last: without it nothing was finished
    try:
        document = json.loads(meta.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        return f"its {meta.name} is unreadable: {type(error).__name__}"
    if not isinstance(document, dict) or document.get("format") != FORMAT or document.get("key") != key:
        return f"its {meta.name} is not this folder's"
    if document.get("shape") != list(shape) or document.get("labels") != [int(c) for c in codes]:
        return f"its {meta.name} does not match the folder's images"
    if not data.is_file():
        return f"{data.name} is missing"
    try:
        with open(data, "rb") as stream:
            header_shape, fortran, dtype = _header(stream)
            offset = stream.tell()
    except (OSError, ValueError) as error:
        return f"its header is unreadable: {error}"
    if tuple(header_shape) != tuple(shape) or fortran or dtype != np.uint8:
        return f"it holds {dtype} {tuple(header_shape)}, not uint8 {tuple(shape)}"
    expected = offset + int(np.prod(shape))
    actual = data.stat().st_size
    if actual != expected:
        return f"{actual:,} bytes instead of {expected:,}"
    return None


def _build(data: Path, meta: Path, key: str, files, codes, classes, height, width, channels, workers, folder) -> None:
    root = data.parent
    try:
        root.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=root, prefix=f".{data.name}.", suffix=".tmp")
        os.close(handle)
    except OSError as error:
        raise DltrainError(f"data.cache_dir={str(root)!r} cannot hold the image cache ({error.strerror or error}); "
                           f"set data.cache_dir to a folder you can write to.") from None
    try:
        pixels = np.lib.format.open_memmap(temporary, mode="w+", dtype=np.uint8,
                                           shape=(len(files), channels, height, width))
        decode_into(pixels, files, height, width, channels, workers, what=f"{folder}")
        pixels.flush()
        del pixels
        os.replace(temporary, data)  # a whole file, under its final name, or nothing
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    document = {"format": FORMAT, "version": VERSION, "key": key, "folder": str(folder), "classes": list(classes),
                "shape": [len(files), channels, height, width], "labels": [int(c) for c in codes]}
    write_atomic(meta, json.dumps(document) + "\n")
