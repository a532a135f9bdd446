"""Where a split's tensors live while the steps run. Small splits (up to
``trainer.device_data_max_mb``) are moved to the training device once, whole, and batched by
indexing there: no per-sample ``__getitem__``, no collate, no copy per step. Larger ones stay in
host memory (pinned, on CUDA) and each batch is gathered there and copied over without blocking."""

from __future__ import annotations

import torch


def rows(x, index):
    """Rows of the inputs: a tensor, or a tuple of tensors (such as tokens and lengths)."""
    return tuple(part[index] for part in x) if isinstance(x, tuple) else x[index]


def length(x) -> int:
    return len(x[0]) if isinstance(x, tuple) else len(x)


def to_device(x, device, non_blocking: bool = False):
    if isinstance(x, tuple):
        return tuple(part.to(device, non_blocking=non_blocking) for part in x)
    return x.to(device, non_blocking=non_blocking)


def nbytes(x) -> int:
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
    rows ``index`` (a tensor on ``index_device``) on the device."""

    def __init__(self, x, y, device: torch.device, max_bytes: float, channels_last: bool = False):
        self.device = device
        self.resident = nbytes(x) + nbytes(y) <= max_bytes
        self.layout = to_channels_last if channels_last else None
        if self.resident:
            x, y = to_device(x, device), y.to(device)
            # Indexing rows keeps the channels_last layout, so the batches come out in it.
            self.x, self.y = (self.layout(x) if self.layout else x), y
            self.index_device = device
        else:
            pin = device.type == "cuda"
            self.x, self.y = (_pinned(x), y.pin_memory()) if pin else (x, y)
            self.index_device = torch.device("cpu")
        self.non_blocking = device.type == "cuda"

    def __len__(self) -> int:
        return len(self.y)

    def batch(self, index):
        if self.resident:
            return rows(self.x, index), self.y[index]
        x = to_device(self._gather(self.x, index), self.device, self.non_blocking)
        y = self._gather(self.y, index).to(self.device, non_blocking=self.non_blocking)
        return (self.layout(x) if self.layout else x), y

    def targets(self, index):
        """Targets in ``index`` order on the device (for the epoch's metrics)."""
        return self.y[index].to(self.device)

    def _gather(self, x, index):
        if isinstance(x, tuple):
            return tuple(self._gather(part, index) for part in x)
        if not self.non_blocking:
            return x[index]
        # Gather straight into fresh pinned memory so the copy to the GPU can overlap compute;
        # the pinned allocator keeps the buffer until that copy has finished.
        out = torch.empty((len(index), *x.shape[1:]), dtype=x.dtype, pin_memory=True)
        return torch.index_select(x, 0, index, out=out)
