"""Running `geex data` as a user does, in its own process, optionally inside a wrapper
(bubblewrap for a full or read-only disk)."""

from __future__ import annotations

import os
import subprocess
import sys

FAST = ["--vocab-size", "600", "--validation-fraction", "0.2", "--workers", "1"]


def geex_data_command(*args) -> list[str]:
    return [sys.executable, "-m", "geex", "data", *map(str, args), *FAST]


def run_geex_data(*args, wrapper: list[str] = (), cwd=None) -> subprocess.CompletedProcess:
    """``geex data ARGS`` with small settings; no network (the Hub is offline)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    command = [*wrapper, *geex_data_command(*args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=cwd, env=env)


def one_line_error(result: subprocess.CompletedProcess) -> str:
    """The error a failed run printed, after checking that it failed with no traceback."""
    assert result.returncode != 0, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("geex data: error:")]
    assert len(lines) == 1, result.stderr
    return lines[0]
