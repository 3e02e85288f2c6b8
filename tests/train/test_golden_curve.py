"""The golden loss curve: the `tiny` preset on the fixed byte-level corpus, 20 steps.

A change that breaks training (data order, masking, initialisation, optimizer, schedule, loss)
moves this curve at once. Expected values were recorded with PyTorch 2.13 on x86-64 CPU;
the tolerance (2% per step) absorbs other CPUs' summation orders, not a real change.
`pytest tests/train/test_golden_curve.py`
"""

from __future__ import annotations

import pytest

from geex.train.config import TrainConfig
from geex.train.monitor import read_metrics
from geex.train.trainer import train

GOLDEN_LOSSES = [
    5.8724, 5.187, 4.834, 4.4981, 4.2822, 3.9624, 3.6797, 3.4122, 3.2501, 2.9987,
    2.9232, 2.7758, 2.6796, 2.5321, 2.5706, 2.5074, 2.4545, 2.4432, 2.5169, 2.406,
]  # fmt: skip
GOLDEN_VALIDATION = {"c": 2.4508, "python": 2.3556, "all": 2.3819}


def test_tiny_preset_reproduces_the_golden_curve(byte_dataset, tmp_path):
    config = TrainConfig(
        data=str(byte_dataset),
        out=str(tmp_path / "run"),
        preset="tiny",
        seq_len=128,
        global_batch_tokens=1024,
        micro_batch_size=8,
        max_steps=20,
        seed=2,
        eval_every=20,
        checkpoint_every=0,
        optim={"warmup_steps": 5, "lr": 5e-4, "min_lr": 5e-5},
    )
    train(config, show_progress=False)
    records = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert [r["loss"] for r in records] == pytest.approx(GOLDEN_LOSSES, rel=0.02)
    assert records[-1]["val_loss"] == pytest.approx(GOLDEN_VALIDATION, rel=0.02)
