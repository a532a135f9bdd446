"""The C heap of a training process. glibc's malloc serves blocks above its mmap threshold with
their own mappings, returned to the system when freed, and raises that threshold each time such
a block is freed (up to 32 MiB). After the first few steps a batch's tensors (a few MiB each)
come from the heap instead, where an epoch's interleaved sizes fragment it: the resident set of
a one-epoch CNN fit on 128x128 images grew by 100-250 MiB over the epoch (bench/README.md, "Image
folders"). Fixing the threshold, as MALLOC_MMAP_THRESHOLD_ would, keeps it where it starts."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

M_MMAP_THRESHOLD = -3  # mallopt's parameter number (malloc.h)
THRESHOLD_BYTES = 1 << 20  # blocks of 1 MiB and more: batches, activations, their gradients

_bounded = False


def bound() -> bool:
    """Fix glibc's mmap threshold at THRESHOLD_BYTES for this process (once); False where the C
    library is not glibc, or where the user set MALLOC_MMAP_THRESHOLD_ themselves."""
    global _bounded
    if _bounded:
        return True
    if not sys.platform.startswith("linux") or "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version  # noqa: B018  (glibc's own: musl's mallopt ignores this parameter)
    except (OSError, AttributeError):
        return False
    _bounded = libc.mallopt(M_MMAP_THRESHOLD, THRESHOLD_BYTES) == 1
    return _bounded
