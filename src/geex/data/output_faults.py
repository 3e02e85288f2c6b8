"""A write into ``geex data``'s OUT that the system refuses, as one line saying what to do.

Every file of the data stage is written under OUT (cleaned files, signatures, logs, the
tokenizer, shards). A full disk, a quota or a read-only mount there stops the run, but what
was finished is kept: each task's files are renamed when whole and its completion marker is
written last, so the same command, run again once there is room, does only what is left.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from geex.errors import GeexError
from geex.os_faults import NO_ROOM, describe_os_fault

# The faults a write into OUT meets; a permission error counts only on a path inside OUT (one
# on a source is not about the output).
_OUTPUT_FAULTS = NO_ROOM | {errno.EROFS, errno.EACCES, errno.EPERM}


def output_fault(err: BaseException, out: str | os.PathLike, during: str) -> GeexError | None:
    """The error to show for ``err``, raised ``during`` a step writing into ``out``; None when
    ``err`` is not a refused write (a bug, or bad input: the caller handles it)."""
    if not isinstance(err, OSError) or err.errno not in _OUTPUT_FAULTS:
        return None
    if err.errno in (errno.EACCES, errno.EPERM) and not _is_under(err.filename, out):
        return None
    fault = describe_os_fault(err, path=str(out))
    if err.errno in NO_ROOM:
        fault += ", then run the same command again to finish (the work done so far is kept)"
    return GeexError(f"cannot write to {out} ({during}): {fault}")


@contextmanager
def writing_to(out: str | os.PathLike, during: str) -> Iterator[None]:
    """Turn a refused write into OUT inside the block into :func:`output_fault`'s error."""
    try:
        yield
    except OSError as err:
        fault = output_fault(err, out, during)
        if fault is None:
            raise
        raise fault from err


def _is_under(filename, out: str | os.PathLike) -> bool:
    """Whether the refused path is OUT or inside it (a permission error on a source is not
    about the output)."""
    if not isinstance(filename, (str, bytes, os.PathLike)):
        return False
    path, folder = Path(os.path.abspath(os.fsdecode(filename))), Path(os.path.abspath(out))
    return path == folder or folder in path.parents
