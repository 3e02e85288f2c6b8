"""A read-only or full `--out` stops `geex run` with one line, and a rerun with room goes on.

Real faults through bubblewrap (a read-only bind, a 64 KiB tmpfs), since root ignores chmod.
`pytest tests/pipeline/test_disk_faults.py`
"""

from __future__ import annotations

import shlex
import sys

from tests.conftest import required_program
from tests.pipeline.conftest import geex_refuses

RUN = ["run", "--budget", "8192 tokens", "--stage", "data"]


def test_a_read_only_out_is_one_line(tmp_path):
    bwrap = required_program("bwrap", package="bubblewrap")
    folder = tmp_path / "read-only"
    folder.mkdir()
    error = geex_refuses(bwrap, "--dev-bind", "/", "/", "--ro-bind", str(folder), str(folder),
                         sys.executable, "-m", "geex", *RUN, str(tmp_path),
                         "--out", str(folder / "out"))  # fmt: skip
    assert f"read-only file system at {folder / 'out'}" in error


def test_a_rerun_after_a_full_disk_goes_past_the_write_that_failed(tmp_path):
    bwrap = required_program("bwrap", package="bubblewrap")
    disk, sources = tmp_path / "disk", tmp_path / "empty-sources"
    disk.mkdir()
    sources.mkdir()  # no bytes to estimate: the check before the run passes on a full disk
    geex = shlex.join([sys.executable, "-m", "geex", *RUN, str(sources), "--out", f"{disk}/out"])
    script = (
        f"head -c 100000 /dev/zero > {disk}/filler 2>/dev/null; {geex}; echo rc=$? >&2; "
        f"rm {disk}/filler; exec {geex}"
    )
    error = geex_refuses(bwrap, "--dev-bind", "/", "/", "--size", "65536", "--tmpfs", str(disk),
                         "sh", "-c", script, "-m")  # fmt: skip
    # 64 KiB is room for run.yaml but not for the data stage's work files: the rerun reaches the
    # stage, and the stage's full disk says that repeating the command continues the run
    assert "run.yaml" not in error and "run the same command again" in error


def test_a_full_disk_names_the_file_being_written(tmp_path):
    bwrap = required_program("bwrap", package="bubblewrap")
    disk, sources = tmp_path / "disk", tmp_path / "empty-sources"
    disk.mkdir()
    sources.mkdir()
    geex = shlex.join([sys.executable, "-m", "geex", *RUN, str(sources), "--out", f"{disk}/out"])
    error = geex_refuses(bwrap, "--dev-bind", "/", "/", "--size", "65536", "--tmpfs", str(disk),
                         "sh", "-c", f"head -c 100000 /dev/zero > {disk}/filler 2>/dev/null; "
                         f"exec {geex}", "-m")  # fmt: skip
    assert f"no space left on device while writing {disk}/out/run.yaml" in error
