"""Images kept as uint8 pixels until the batch. A store holds every decoded image of a dataset as
(N, channels, height, width) uint8: an array in memory or memory-mapped (ArrayStore), a file read
row by row with positioned reads so that its pages never count against this process (FileStore),
or a tensor already on the training device (TensorStore). ``Pixels`` are the rows of one split of
a store plus the normalisation that turns a gathered batch, on its device, into the model's float
inputs: no float copy of a whole split is ever made."""

from __future__ import annotations

import os
import threading

import numpy as np

# Bytes of rows read at a time when a whole split is walked (statistics, a copy to the device):
# small enough that the temporaries come and go without growing the heap.
CHUNK_BYTES = 2 << 20


def _runs(index: np.ndarray):
    """(position in ``index``, first row, row count) of each run of consecutive rows in ``index``."""
    if len(index) == 0:
        return []
    breaks = np.flatnonzero(np.diff(index) != 1) + 1
    starts = np.concatenate(([0], breaks))
    ends = np.concatenate((breaks, [len(index)]))
    return [(int(s), int(index[s]), int(e - s)) for s, e in zip(starts, ends)]


class ArrayStore:
    """Images in a numpy array (in memory, or a read-only memory map whose pages the system
    shares between processes)."""

    streams = False

    def __init__(self, array: np.ndarray):
        self.array = array
        self.shape = tuple(array.shape)

    def read(self, rows, out=None):
        import torch

        index = np.arange(self.shape[0]) if rows is None else rows.numpy()
        buffer = out.numpy() if out is not None else None
        result = np.take(self.array, index, axis=0, out=buffer)
        return out if out is not None else torch.from_numpy(result)


class FileStore:
    """Images in a ``.npy`` file at ``path`` (``offset``: where its rows start), read by position:
    only the rows asked for pass through this process's memory, whatever the file's size."""

    streams = True

    def __init__(self, path, offset: int, shape: tuple[int, ...]):
        self.path, self.offset, self.shape = str(path), offset, tuple(shape)
        self.row_bytes = int(np.prod(shape[1:]))
        self._handle = None
        self._lock = threading.Lock()  # for systems without positioned reads (a seek, then a read)

    def _file(self):
        if self._handle is None:
            self._handle = open(self.path, "rb", buffering=0)
        return self._handle

    def read(self, rows, out=None):
        import torch

        index = np.arange(self.shape[0]) if rows is None else rows.numpy()
        if out is None:
            out = torch.empty((len(index), *self.shape[1:]), dtype=torch.uint8)
        flat = out.numpy().reshape(len(index), self.row_bytes)
        for position, first, count in _runs(index):
            self._read_into(memoryview(flat[position:position + count]).cast("B"),
                            self.offset + first * self.row_bytes)
        return out

    def _read_into(self, buffer: memoryview, offset: int) -> None:
        handle = self._file()
        done = 0
        while done < len(buffer):
            if hasattr(os, "preadv"):
                got = os.preadv(handle.fileno(), [buffer[done:]], offset + done)
            else:
                with self._lock:
                    handle.seek(offset + done)
                    got = handle.readinto(buffer[done:])
            if not got:
                raise OSError(f"{self.path} ended before row data at byte {offset + done}")
            done += got

    def __getstate__(self):  # a copy in another process opens its own handle
        return {**self.__dict__, "_handle": None, "_lock": None}

    def __setstate__(self, state):
        self.__dict__.update(state, _lock=threading.Lock())

    def __del__(self):
        if self._handle is not None:
            self._handle.close()


class TensorStore:
    """Images in a uint8 tensor, such as one split moved whole to the training device."""

    streams = False

    def __init__(self, tensor):
        self.tensor = tensor
        self.shape = tuple(tensor.shape)

    def read(self, rows, out=None):
        result = self.tensor if rows is None else self.tensor[rows.to(self.tensor.device)]
        if out is not None:
            out.copy_(result)
            return out
        return result


class Pixels:
    """Rows ``rows`` (a CPU LongTensor, None for all) of ``store``, normalised per batch: divided
    by ``scale``, augmented when asked, less ``mean`` over ``std`` per channel, and with
    ``as_sequence`` each image's rows as steps of ``channels * width`` values."""

    def __init__(self, store, rows=None, *, mean=None, std=None, scale: float = 255.0, as_sequence: bool = False):
        self.store, self.rows = store, rows
        self.mean, self.std, self.scale, self.as_sequence = mean, std, scale, as_sequence
        self._constants = {}

    @classmethod
    def of(cls, images, **normalization) -> "Pixels":
        """Pixels over a uint8 array or tensor (N, channels, height, width)."""
        import torch

        if isinstance(images, torch.Tensor):
            images = images.numpy() if images.device.type == "cpu" else images
        store = ArrayStore(np.ascontiguousarray(images)) if isinstance(images, np.ndarray) else TensorStore(images)
        return cls(store, **normalization)

    def _with(self, store=None, rows=None, **normalization) -> "Pixels":
        settings = {"mean": self.mean, "std": self.std, "scale": self.scale, "as_sequence": self.as_sequence,
                    **normalization}
        return Pixels(store or self.store, rows, **settings)

    def normalized(self, mean, std, scale: float, as_sequence: bool) -> "Pixels":
        return self._with(rows=self.rows, mean=mean, std=std, scale=scale, as_sequence=as_sequence)

    # ------------------------------------------------------------------ rows

    def __len__(self) -> int:
        return self.store.shape[0] if self.rows is None else len(self.rows)

    @property
    def shape(self) -> tuple[int, ...]:
        """(rows, channels, height, width) of the stored images."""
        return (len(self), *self.store.shape[1:])

    @property
    def streams(self) -> bool:
        """Rows come from a file, read batch by batch (the store did not fit data.memory_max_mb)."""
        return self.store.streams

    @property
    def nbytes(self) -> int:
        return len(self) * int(np.prod(self.store.shape[1:]))

    def __getitem__(self, index) -> "Pixels":
        import torch

        if isinstance(index, slice):
            start, stop, step = index.indices(len(self))
            chosen = (torch.arange(start, stop, step) if self.rows is None else self.rows[index])
        else:
            index = torch.as_tensor(np.asarray(index) if not isinstance(index, torch.Tensor) else index,
                                    dtype=torch.long)
            on = self.store.tensor.device if isinstance(self.store, TensorStore) else torch.device("cpu")
            chosen = index.to(on) if self.rows is None else self.rows[index.to(self.rows.device)]
        return self._with(rows=chosen)

    def uint8(self, pin: bool = False, out=None):
        """The rows' pixels as one uint8 tensor (N, C, H, W), gathered now: into fresh pinned
        memory with ``pin``, into the first N rows of the uint8 tensor ``out`` when given."""
        import torch

        if pin:
            out = torch.empty(self.shape, dtype=torch.uint8, pin_memory=True)
        elif out is not None:
            out = out[:len(self)]
        return self.store.read(self.rows, out)

    def on(self, device) -> "Pixels":
        """These rows copied whole to ``device``, a chunk at a time (the host holds one chunk)."""
        import torch

        if isinstance(self.store, TensorStore) and self.store.tensor.device == device and self.rows is None:
            return self
        whole = torch.empty(self.shape, dtype=torch.uint8, device=device)
        step = self._chunk_rows()
        for start in range(0, len(self), step):
            whole[start:start + step] = self[start:start + step].uint8().to(device)
        return self._with(store=TensorStore(whole), rows=None)

    # ------------------------------------------------------------------ what the model reads

    def inputs(self, device, augment=None, non_blocking: bool = False):
        """The rows as the model's float inputs on ``device`` (augmented when ``augment``)."""
        return self.model_inputs(self.uint8().to(device, non_blocking=non_blocking), augment)

    def model_inputs(self, batch, augment=None):
        """A uint8 batch of these images (on its device) as the model's float inputs."""
        # In place on the batch's own float copy: one float batch allocated per batch, not three.
        x = batch.float().div_(self.scale)
        if augment is not None:
            x = augment(x)
        mean, std = self._on(x.device)
        x = x.sub_(mean).div_(std)
        if self.as_sequence:
            x = x.permute(0, 2, 1, 3).flatten(2).contiguous()
        return x

    def _chunk_rows(self) -> int:
        return max(1, CHUNK_BYTES // int(np.prod(self.store.shape[1:])))

    def _on(self, device):
        import torch

        if device not in self._constants:
            self._constants[device] = tuple(torch.tensor(values, dtype=torch.float32, device=device).view(1, -1, 1, 1)
                                            for values in (self.mean, self.std))
        return self._constants[device]

    def channel_statistics(self, scale: float) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Per-channel mean and (sample) standard deviation of the rows' pixels over ``scale``:
        counted exactly, a chunk of rows at a time, so the result is the same however they are stored."""
        channels = self.store.shape[1]
        counts = np.zeros((channels, 256), dtype=np.int64)
        step = self._chunk_rows()
        for start in range(0, len(self), step):
            chunk = self[start:start + step].uint8().cpu().numpy()
            for c in range(channels):
                counts[c] += np.bincount(chunk[:, c].reshape(-1), minlength=256)
        values = np.arange(256, dtype=np.float64) / scale
        n = counts.sum(axis=1)
        mean = (counts * values).sum(axis=1) / n
        variance = (counts * (values - mean[:, None]) ** 2).sum(axis=1) / np.maximum(n - 1, 1)
        return tuple(float(m) for m in mean), tuple(max(float(s), 1e-6) for s in np.sqrt(variance))
