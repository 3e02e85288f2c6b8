"""Keeping freed memory in the process while training on the CPU.

glibc's ``malloc`` serves a large block (from 128 KiB, a threshold it raises as such blocks
are freed, to at most 32 MiB) with a mapping of its own, unmapped when the block is freed,
and it returns the heap's free top to the system once that passes a trim threshold. A
training step allocates and frees the same activations and gradients every step, so each step
maps fresh pages and the kernel faults in and zeroes every one as it is first written. At
``small`` that is about 160,000 page faults a step (the head's 160 MB gradient and the loss's
logits alone are far above 32 MiB), and 15% of the step's time spent in the kernel.

Serving every block from the heap and never trimming it keeps freed blocks for the next step:
the faults go, the process keeps its peak heap (which the next step would take again anyway),
and steps run 5 to 11% faster (``benchmarks/host_memory.py``). Only CPU runs ask for it: a GPU
run's host memory holds checkpoints staged on their way to disk, tens of GB at 13B, which
glibc should give back. Other C libraries (musl, macOS) are left as they are.
"""

from __future__ import annotations

import ctypes
import platform

# glibc's malloc.h: mallopt's parameters.
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
# mallopt takes a C int: the largest one, so that the heap is in practice never trimmed.
TRIM_THRESHOLD = 2**31 - 1


def keep_freed_memory() -> bool:
    """Have glibc serve every block from its heap (no mapping of its own) and keep the heap's
    free memory in the process; False where the C library is not glibc."""
    if platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return mallopt(M_MMAP_MAX, 0) == 1 and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
