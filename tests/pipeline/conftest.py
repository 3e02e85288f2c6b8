"""The small `geex run` the pipeline tests share."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from geex.pipeline import run_config, run_pipeline
from tests.pipeline.corpus import write_corpus

SMALL_RUN = {
    "budget": "8192 tokens",
    "data": {"vocab_size": 600},
    "train": {"eval_every": 2},  # a validation at the last of the 2 steps
    "eval": {"languages": ["python"], "max_new_tokens": 32, "workers": 1},
}


def small_config(tmp_path, **fields):
    code = write_corpus(tmp_path / "code")
    return run_config({**SMALL_RUN, "out": str(tmp_path / "run"), **fields,
                       "data": {**SMALL_RUN["data"], "sources": [str(code)]}})  # fmt: skip


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory):
    """One whole run, shared by the tests that only read what it made."""
    tmp_path = tmp_path_factory.mktemp("run")
    config = small_config(tmp_path)
    result = run_pipeline(config)
    return config, result


def geex_refuses(*command: str, env: dict | None = None) -> str:
    """Run ``command`` (``geex`` arguments, or a wrapper such as bwrap before ``-m geex``) and
    return its one-line error, after checking it failed without a traceback."""
    argv = list(command) if "-m" in command else [sys.executable, "-m", "geex", *command]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=600,
                            env={**os.environ, "PYTHONWARNINGS": "ignore", **(env or {})})  # fmt: skip
    lines = result.stderr.strip().splitlines()
    assert result.returncode != 0, f"succeeded:\n{result.stderr[-3000:]}"
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    return lines[-1] if lines else ""
