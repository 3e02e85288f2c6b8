"""The CLI turns a machine's faults (full disk, read-only, forbidden) into one line, and keeps
the traceback of any other OSError.

`pytest tests/test_cli_environment_faults.py`
"""

from __future__ import annotations

import errno
import os

import pytest

from geex.cli import environment_fault


@pytest.mark.parametrize(
    ("code", "said"),
    [
        (errno.ENOSPC, "no space left on device while writing /x/f"),
        (errno.EDQUOT, "disk quota exceeded while writing /x/f"),
        (errno.EROFS, "read-only file system at /x/f"),
        (errno.EACCES, "permission denied for /x/f"),
        (errno.EPERM, "operation not permitted on /x/f"),
    ],
)
def test_a_fault_of_the_machine_is_one_line_naming_the_path(code, said):
    fault = environment_fault(OSError(code, os.strerror(code), "/x/f"))
    assert fault.startswith(said) and "\n" not in fault


def test_a_full_disk_without_a_file_name_is_still_one_line():
    assert environment_fault(OSError(errno.ENOSPC, "No space left on device")).startswith(
        "no space left on device while writing a file"
    )


@pytest.mark.parametrize("code", [errno.ENOENT, errno.EIO, errno.EBADF])
def test_other_os_errors_keep_their_traceback(code):
    assert environment_fault(OSError(code, os.strerror(code), "/x/f")) is None
    assert environment_fault(OSError(errno.EACCES, "Permission denied")) is None
