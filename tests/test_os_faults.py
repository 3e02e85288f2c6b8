"""One description of a machine's fault behind any error, for every command: the OSError
itself, one it caused, or one a rank raised inside torch's distributed checkpoint.

`pytest tests/test_os_faults.py`
"""

from __future__ import annotations

import errno
import os

from torch.distributed.checkpoint.api import CheckpointException

from geex.os_faults import describe_os_fault

FULL = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/x/f")


def test_an_os_error_raised_under_another_is_found():
    try:
        try:
            raise FULL
        except OSError as err:
            raise RuntimeError("serializer failed") from err
    except RuntimeError as wrapped:
        assert describe_os_fault(wrapped) == "no space left on device while writing /x/f: " + (
            "free some space"
        )


def test_a_rank_s_os_error_inside_a_checkpoint_exception_is_found():
    wrapped = CheckpointException(
        "save failed", {0: (ValueError("other rank"), None), 1: (FULL, None)}
    )
    assert describe_os_fault(wrapped).startswith("no space left on device while writing /x/f")


def test_the_caller_s_path_stands_in_for_a_missing_file_name():
    read_only = OSError(errno.EROFS, os.strerror(errno.EROFS))
    assert describe_os_fault(read_only) is None  # no path: possibly a bug, keep its traceback
    assert describe_os_fault(read_only, path="/out").startswith("read-only file system at /out")


def test_anything_else_is_not_a_fault_of_the_machine():
    assert describe_os_fault(ValueError("bad value")) is None
    assert describe_os_fault(OSError(errno.EIO, os.strerror(errno.EIO), "/x/f")) is None
