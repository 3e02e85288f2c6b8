"""Checks made before and around a run's stages.

`pytest tests/pipeline/test_checks.py`
"""

from __future__ import annotations

import errno

import pytest

from geex.errors import GeexError
from geex.pipeline.checks import (
    CHECKPOINT_BYTES_PER_PARAM,
    EMBEDDED_DATA_BYTES,
    checkpoint_disk_bytes,
    data_disk_bytes,
    disk_full_is_an_error,
    export_disk_bytes,
)


def test_a_full_disk_mid_stage_says_what_to_do(tmp_path):
    expected = r"the disk is full writing .*shard.*run the same command"
    with pytest.raises(GeexError, match=expected), disk_full_is_an_error(tmp_path):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "shard.bin"))


def test_other_os_errors_pass_through(tmp_path):
    with pytest.raises(PermissionError), disk_full_is_an_error(tmp_path):
        raise PermissionError(errno.EACCES, "Permission denied")


def test_the_disk_estimate_of_each_stage(tmp_path):
    (tmp_path / "a.py").write_bytes(b"x" * 1000)
    assert data_disk_bytes([str(tmp_path)]) == 3000
    assert data_disk_bytes([]) == EMBEDDED_DATA_BYTES
    assert checkpoint_disk_bytes(1000, keep_checkpoints=2) == 1000 * CHECKPOINT_BYTES_PER_PARAM * 3
    assert export_disk_bytes(1000) == 8000
