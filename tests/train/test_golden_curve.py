"""The golden loss curves: the `tiny` model on the fixed byte-level corpus, 20 steps, with
CodeGeeX's AdamW and with Muon (the tiny preset's optimizer).

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

GOLDEN = {
    "adamw": (
        [5.8724, 5.187, 4.834, 4.4981, 4.2822, 3.9624, 3.6797, 3.4122, 3.2501, 2.9987,
         2.9232, 2.7758, 2.6796, 2.5321, 2.5706, 2.5074, 2.4545, 2.4432, 2.5169, 2.406],
        {"c": 2.4508, "python": 2.3556, "all": 2.3819},
    ),
    # Slower than AdamW over these 20 steps at the same rate; ahead over the ~1,000 steps of a
    # 10-minute run (docs/training.md).
    "muon": (
        [5.8724, 5.7891, 5.7001, 5.4693, 5.2206, 4.9339, 4.7612, 4.5037, 4.3184, 4.1268,
         4.0153, 3.8367, 3.7394, 3.6037, 3.5633, 3.5158, 3.5289, 3.43, 3.4553, 3.368],
        {"c": 3.3593, "python": 3.3852, "all": 3.378},
    ),
}  # fmt: skip


@pytest.mark.parametrize("optimizer", GOLDEN)
def test_tiny_model_reproduces_the_golden_curve(byte_dataset, tmp_path, optimizer):
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
        optim={"warmup_steps": 5, "lr": 5e-4, "min_lr": 5e-5, "optimizer": optimizer},
    )
    train(config, show_progress=False)
    records = read_metrics(tmp_path / "run" / "metrics.jsonl")
    losses, validation = GOLDEN[optimizer]
    assert [r["loss"] for r in records] == pytest.approx(losses, rel=0.02)
    assert records[-1]["val_loss"] == pytest.approx(validation, rel=0.02)
