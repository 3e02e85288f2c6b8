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
    disk_full_is_an_error,
    estimate_disk_bytes,
)


def test_a_full_disk_mid_stage_says_what_to_do(tmp_path):
    expected = r"the disk is full writing .*shard.*run the same command"
    with pytest.raises(GeexError, match=expected), disk_full_is_an_error(tmp_path):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "shard.bin"))


def test_other_os_errors_pass_through(tmp_path):
    with pytest.raises(PermissionError), disk_full_is_an_error(tmp_path):
        raise PermissionError(errno.EACCES, "Permission denied")


def test_the_estimate_counts_only_the_stages_still_to_run(tmp_path):
    (tmp_path / "a.py").write_bytes(b"x" * 1000)
    full = estimate_disk_bytes([str(tmp_path)], params=1000, keep_checkpoints=2)
    assert full == 3000 + 1000 * CHECKPOINT_BYTES_PER_PARAM * 3 + 8000
    assert estimate_disk_bytes([], 0, 0, checkpoints=False, exports=False) == EMBEDDED_DATA_BYTES
    assert estimate_disk_bytes([str(tmp_path)], 1000, 2, data=False, checkpoints=False) == 8000
