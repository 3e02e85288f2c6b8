"""The CLI turns a machine's faults (full disk, read-only, forbidden, a file where a folder goes)
into one line, and keeps the traceback of any other OSError.

`pytest tests/test_cli_environment_faults.py`
"""

from __future__ import annotations

import argparse
import errno
import os

import pytest

from geex import cli
from geex.cli import environment_fault


@pytest.mark.parametrize(
    ("code", "said"),
    [
        (errno.ENOSPC, "no space left on device while writing /x/f"),
        (errno.EDQUOT, "disk quota exceeded while writing /x/f"),
        (errno.EROFS, "read-only file system at /x/f"),
        (errno.EACCES, "permission denied for /x/f"),
        (errno.EPERM, "operation not permitted on /x/f"),
        (errno.ENOTDIR, "a part of /x/f is a file, not a folder"),
        (errno.EEXIST, "/x/f already exists and is in the way"),
        (errno.EISDIR, "/x/f is a folder, not a file"),
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


def command_raising(monkeypatch, err: OSError) -> None:
    """Make ``geex write`` a command whose handler raises ``err``."""

    def handler(args):
        raise err

    parser = argparse.ArgumentParser(prog="geex")
    parser.add_subparsers(dest="command").add_parser("write").set_defaults(handler=handler)
    monkeypatch.setattr(cli, "build_parser", lambda: parser)


def test_main_says_a_full_disk_in_one_line_and_exits_2(monkeypatch, capsys):
    command_raising(monkeypatch, OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/x/f"))
    assert cli.main(["write"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("geex write: error: no space left on device while writing /x/f")
    assert len(err.strip().splitlines()) == 1


def test_main_lets_any_other_os_error_through(monkeypatch):
    command_raising(monkeypatch, OSError(errno.EIO, os.strerror(errno.EIO), "/x/f"))
    with pytest.raises(OSError, match="Input/output error"):
        cli.main(["write"])
