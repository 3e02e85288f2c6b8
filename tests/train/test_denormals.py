"""The trainer flushes subnormal floats in every CPU thread, and says when it cannot. `pytest tests/train/test_denormals.py`."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(
    platform.machine() not in ("x86_64", "AMD64"), reason="flushing subnormals is an x86 mode"
)

PROBE = """
import sys, warnings
import torch
from geex.train.trainer import every_thread_flushes_denormals, flush_denormals
if sys.argv[1] == "pool-started":
    torch.ones(1_000_000).mul(2.0)  # a parallel operation starts torch's threads
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    flush_denormals()
print(every_thread_flushes_denormals(), [str(w.message) for w in caught])
"""


def probe(case: str) -> str:
    # Two threads even on a one-core machine: the pool's second thread is what is tested.
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    result = subprocess.run(
        [sys.executable, "-c", PROBE, case], capture_output=True, text=True, env=env, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_flushing_before_the_threads_start_reaches_every_thread():
    assert probe("fresh") == "True []"


def test_flushing_after_the_threads_started_warns_that_some_still_compute_them():
    out = probe("pool-started")
    assert out.startswith("False [") and "several times slower" in out


def test_training_gives_the_calling_thread_its_mode_back(byte_dataset, tmp_path):
    """Code run after train() in the same thread (hypothesis, in this very suite) needs IEEE
    subnormals; the pool's threads may keep flushing them."""
    from geex.train.config import TrainConfig
    from geex.train.trainer import calling_thread_flushes_denormals, train
    from tests.train.runs import SMALL_MODEL

    assert not calling_thread_flushes_denormals()
    config = TrainConfig(data=str(byte_dataset), out=str(tmp_path), preset="tiny",
                         model=SMALL_MODEL, seq_len=64, global_batch_tokens=256,
                         micro_batch_size=4, max_steps=1, precision="fp32")  # fmt: skip
    train(config, show_progress=False)
    assert not calling_thread_flushes_denormals()
