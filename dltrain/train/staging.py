"""Where a split's tensors live while the steps run. Small splits (up to
``trainer.device_data_max_mb``) are moved to the training device once, whole, and batched by
indexing there: no per-sample ``__getitem__``, no collate, no copy per step. Larger ones stay in
host memory or in their file (image Pixels over data.memory_max_mb) and each batch is gathered by
index in a background thread, into pinned memory on CUDA, and copied over without blocking. Image
Pixels stay uint8 until a batch is on the device, where it is augmented and normalized."""

from __future__ import annotations

import queue
import threading

import torch

from dltrain.data.pixels import Pixels

# Batches gathered ahead of the step that needs them, when a split streams.
PREFETCH = 2


def rows(x, index):
    """Rows of the inputs: a tensor, a tuple of tensors (such as tokens and lengths), or Pixels."""
    return tuple(part[index] for part in x) if isinstance(x, tuple) else x[index]


def length(x) -> int:
    return len(x[0]) if isinstance(x, tuple) else len(x)


def to_device(x, device, non_blocking: bool = False):
    """The inputs on ``device`` as the model reads them (Pixels: gathered, then normalized there)."""
    if isinstance(x, tuple):
        return tuple(part.to(device, non_blocking=non_blocking) for part in x)
    if isinstance(x, Pixels):
        return x.inputs(device, non_blocking=non_blocking)
    return x.to(device, non_blocking=non_blocking)


def augmented_inputs(x, device, augment=None):
    """Training inputs on ``device``: ``augment`` (when given) runs on image Pixels before they
    are normalized, on anything else after the copy."""
    if isinstance(x, Pixels):
        return x.inputs(device, augment)
    x = to_device(x, device)
    return augment(x) if augment is not None else x


def nbytes(x) -> int:
    if isinstance(x, Pixels):
        return x.nbytes
    parts = x if isinstance(x, tuple) else (x,)
    return sum(part.numel() * part.element_size() for part in parts)


def _pinned(x):
    return tuple(_pinned(p) for p in x) if isinstance(x, tuple) else x.pin_memory()


def to_channels_last(x):
    """A float image batch (N, C, H, W) in channels_last layout; anything else as it is."""
    if isinstance(x, torch.Tensor) and x.dim() == 4 and x.is_floating_point():
        return x.contiguous(memory_format=torch.channels_last)
    return x


class Staged:
    """One split (inputs ``x``, targets ``y``) staged for ``device``; ``batch(index)`` gives the
    rows ``index`` (a tensor on ``index_device``) on the device, ``batches(indices)`` one batch
    per index of an epoch, gathered ahead in a background thread when the split streams.
    ``augment``: applied to each batch of image Pixels on the device (the training split's)."""

    def __init__(self, x, y, device: torch.device, max_bytes: float, channels_last: bool = False, augment=None):
        self.device = device
        self.augment = augment
        self.pixels = isinstance(x, Pixels)
        fits = nbytes(x) + nbytes(y) <= max_bytes
        self.layout = to_channels_last if channels_last else None
        self.non_blocking = device.type == "cuda"
        self._ring = None  # the streaming reader's buffers (image Pixels off CUDA)
        if self.pixels and device.type == "cpu":
            # Host memory is the device: the rows are gathered from their store per batch, never copied whole.
            self.resident = fits and not x.streams
            self.x, self.y, self.index_device = x, y, torch.device("cpu")
        elif self.pixels and fits:
            self.resident = True
            self.x, self.y, self.index_device = x.on(device), y.to(device), device  # still uint8
        elif self.pixels:
            self.resident = False
            self.x, self.y = x, (y.pin_memory() if self.non_blocking else y)
            self.index_device = torch.device("cpu")
        elif fits:
            self.resident = True
            x, y = to_device(x, device), y.to(device)
            # Indexing rows keeps the channels_last layout, so the batches come out in it.
            self.x, self.y = (self.layout(x) if self.layout else x), y
            self.index_device = device
        else:
            self.resident = False
            self.x, self.y = (_pinned(x), y.pin_memory()) if self.non_blocking else (x, y)
            self.index_device = torch.device("cpu")

    def __len__(self) -> int:
        return len(self.y)

    def batch(self, index):
        """Rows ``index`` on the device, gathered now."""
        return self._arrive(self._gather_batch(index))

    def batches(self, indices):
        """One batch per index tensor of ``indices`` (an iterable), in order. Image Pixels that
        stream, and any split bound for CUDA that does not stay there whole, are gathered ahead
        in a background thread; other splits in host memory are gathered as they are needed."""
        if self.resident or not (self.pixels or self.non_blocking):
            return (self.batch(index) for index in indices)
        indices = list(indices)
        if self.pixels and not self.non_blocking and indices:
            # The reader fills buffers allocated here, in turn: a thread that allocated each batch
            # would grow its own heap (glibc's per-thread arena) by hundreds of MiB over an epoch.
            rows = max(len(index) for index in indices)
            if self._ring is None or len(self._ring[0]) < rows:
                self._ring = [torch.empty((rows, *self.x.shape[1:]), dtype=torch.uint8) for _ in range(PREFETCH + 2)]
        return (self._arrive(gathered) for gathered in _ahead(self._gather_batch, indices))

    def _gather_batch(self, index, buffer: int = 0):
        """The rows ``index`` as far as the host goes: on the device when resident, else gathered
        into (pinned) host memory for a copy that does not block (image Pixels on the CPU: into
        ring buffer ``buffer``, free again once the batch has been turned into floats)."""
        if self.pixels:
            part = self.x[index]
            if self.resident:
                return part, self.y[index]
            if self.non_blocking:
                return part.uint8(pin=True), self.y[index]
            if self._ring is None:  # one batch asked for on its own
                return part.uint8(), self.y[index]
            return part.uint8(out=self._ring[buffer % len(self._ring)]), self.y[index]
        if self.resident:
            return rows(self.x, index), self.y[index]
        return self._gather(self.x, index), self._gather(self.y, index)

    def _arrive(self, gathered):
        x, y = gathered
        if self.pixels:
            if self.resident:
                x = x.inputs(self.device, self.augment)
            else:
                x = self.x.model_inputs(x.to(self.device, non_blocking=self.non_blocking), self.augment)
            return (self.layout(x) if self.layout else x), y.to(self.device, non_blocking=self.non_blocking)
        if self.resident:
            return gathered
        x = to_device(x, self.device, self.non_blocking)
        return (self.layout(x) if self.layout else x), y.to(self.device, non_blocking=self.non_blocking)

    def targets(self, index):
        """Targets in ``index`` order on the device (for the epoch's metrics)."""
        return self.y[index.to(self.y.device)].to(self.device)

    def _gather(self, x, index):
        if isinstance(x, tuple):
            return tuple(self._gather(part, index) for part in x)
        if not self.non_blocking:
            return x[index]
        # Gather straight into fresh pinned memory so the copy to the GPU can overlap compute;
        # the pinned allocator keeps the buffer until that copy has finished.
        out = torch.empty((len(index), *x.shape[1:]), dtype=x.dtype, pin_memory=True)
        return torch.index_select(x, 0, index, out=out)


_DONE = object()


def _ahead(gather, indices):
    """``gather(index, number)`` for each index of ``indices``, computed PREFETCH batches ahead in a
    background thread; closing the generator (an epoch cut short) stops the thread."""
    ready: queue.Queue = queue.Queue(maxsize=PREFETCH)
    stop = threading.Event()

    def work():
        try:
            for number, index in enumerate(indices):
                if stop.is_set():
                    return
                ready.put((gather(index, number), None))
        except BaseException as error:  # handed to the training thread, which raises it
            ready.put((None, error))
            return
        ready.put((_DONE, None))

    thread = threading.Thread(target=work, name="dltrain-batches", daemon=True)
    thread.start()
    try:
        while True:
            item, error = ready.get()
            if error is not None:
                raise error
            if item is _DONE:
                return
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # let a put() waiting on a full queue finish
            try:
                ready.get(timeout=0.05)
            except queue.Empty:
                pass
        thread.join()
