"""Keeping freed memory in the process while training on the CPU.

glibc's ``malloc`` serves a large block (from 128 KiB, a threshold it raises as such blocks
are freed, to at most 32 MiB) with a mapping of its own, unmapped when the block is freed,
and it returns the heap's free top to the system once that passes a trim threshold. A
training step allocates and frees the same activations and gradients every step, so each step
maps fresh pages and the kernel faults in and zeroes every one as it is first written. At
``small`` that is about 160,000 page faults a step (the head's 160 MB gradient and the loss's
logits alone are far above 32 MiB), and 2.2 s in the kernel over six 2-second steps.

Serving every block from the heap and trimming it only past 2 GiB keeps freed blocks for the
next step: the faults go, the process keeps its peak heap (which the next step would take
again anyway), and steps run 4 to 12% faster (``benchmarks/host_memory.py``). When training
ends, :func:`give_back_freed_memory` sets glibc's default limits again and returns the kept
memory, so what runs next in the process does not hold training's peak. Only CPU runs ask for
it: a GPU run's host memory holds checkpoints staged on their way to disk, tens of GB at 13B,
which glibc should give back at once. Other C libraries (musl, macOS) are left as they are.
"""

from __future__ import annotations

import ctypes
import platform

# glibc's malloc.h: mallopt's parameters.
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
# mallopt takes a C int: the largest one, so that the heap is in practice never trimmed.
TRIM_THRESHOLD = 2**31 - 1
# glibc's defaults (malloc.c: DEFAULT_MMAP_MAX, DEFAULT_TRIM_THRESHOLD).
DEFAULT_MMAP_MAX = 65536
DEFAULT_TRIM_THRESHOLD = 128 * 1024


def keep_freed_memory() -> bool:
    """Have glibc serve every block from its heap (no mapping of its own) and keep the heap's
    free memory in the process; False where the C library is not glibc."""
    libc = _glibc()
    if libc is None:
        return False
    return libc.mallopt(M_MMAP_MAX, 0) == 1 and libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1


def give_back_freed_memory() -> None:
    """glibc's default limits again, and the heap's free memory returned to the system.

    The limits come back fixed: glibc's own mmap and trim thresholds move as blocks are freed
    until a program sets one, and cannot be made to move again.
    """
    libc = _glibc()
    if libc is None:
        return
    libc.mallopt(M_MMAP_MAX, DEFAULT_MMAP_MAX)
    libc.mallopt(M_TRIM_THRESHOLD, DEFAULT_TRIM_THRESHOLD)
    libc.malloc_trim(0)


def _glibc() -> ctypes.CDLL | None:
    """The process's C library with ``mallopt`` and ``malloc_trim`` typed, if it is glibc."""
    if platform.libc_ver()[0] != "glibc":
        return None
    try:
        libc = ctypes.CDLL(None)
        libc.mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
        libc.malloc_trim.argtypes = (ctypes.c_size_t,)
    except (OSError, AttributeError):
        return None
    libc.mallopt.restype = libc.malloc_trim.restype = ctypes.c_int
    return libc
