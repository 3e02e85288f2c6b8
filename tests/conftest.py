"""Shared fixtures: paths to the reference data beside the repository, skipped when absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

# Tests check correctness on small tensors, where one thread is as fast as two and is not
# slowed a hundredfold by OpenMP spin-waits when the machine is busy. Child processes
# (torchrun, `geex` subprocesses) inherit the setting.
os.environ.setdefault("OMP_NUM_THREADS", "1")
torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


def shared_path(*parts: str) -> Path:
    """A path under ../shared, or skip the test with the reason when it is not there."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"reference data not found at {path} (the ../shared folder beside the repo)")
    return path


@pytest.fixture
def codegeex_tokenizer_dir() -> Path:
    return shared_path("data", "codegeex-tokenizer")


@pytest.fixture
def humanevalx_dir() -> Path:
    return shared_path("data", "humaneval-x")
