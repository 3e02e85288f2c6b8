"""``optimizer: muon``: Muon for the blocks' matmul weights, AdamW for the rest; the tiny preset
trains with it, resumes it exactly, and gives way to AdamW where weights are sharded or adapted.

`pytest tests/train/test_muon.py`
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from geex.errors import ConfigError
from geex.model import build_model
from geex.presets import model_preset
from geex.train.config import OptimConfig, TrainConfig
from geex.train.monitor import read_metrics
from geex.train.optim import Optimizers, build_optimizer
from geex.train.trainer import train
from tests.train.test_trainer import config


def test_muon_takes_the_hidden_matrices_and_adamw_the_rest():
    model = build_model(model_preset("tiny"), seed=0)
    optimizer = build_optimizer(model, OptimConfig(optimizer="muon", lr=5e-4))
    assert isinstance(optimizer, Optimizers)
    muon, adamw = optimizer
    assert isinstance(muon, torch.optim.Muon) and isinstance(adamw, torch.optim.AdamW)
    names = {id(p): n for n, p in model.named_parameters()}
    in_muon = {names[id(p)] for g in muon.param_groups for p in g["params"]}
    in_adamw = {names[id(p)] for g in adamw.param_groups for p in g["params"]}
    assert in_muon.isdisjoint(in_adamw) and in_muon | in_adamw == set(names.values())
    linear = {f"{n}.weight" for n, m in model.named_modules() if isinstance(m, nn.Linear)}
    assert in_muon == linear and "top_query_layer.attention.query.weight" in in_muon
    decayed = {names[id(p)] for p in adamw.param_groups[0]["params"]}
    assert decayed == {"word_embeddings.weight", "position_embeddings.weight",
                       "top_query_embeddings.weight"}  # fmt: skip
    assert all(g["weight_decay"] == 0.0 for g in adamw.param_groups[1:])
    assert muon.param_groups[0]["weight_decay"] == 0.1
    # The trainer sets one learning rate for every group of both.
    for group in optimizer.param_groups:
        group["lr"] = 1e-4
    assert muon.param_groups[0]["lr"] == adamw.param_groups[0]["lr"] == 1e-4


def test_muon_trains_and_a_resumed_run_matches_the_uninterrupted_one(byte_dataset, tmp_path):
    # The cosine's length is fixed, so that stopping at step 3 leaves the schedule as it is.
    muon = {"optimizer": "muon", "warmup_steps": 1, "lr": 1e-3, "decay_steps": 6}
    whole, split = tmp_path / "whole", tmp_path / "split"
    train(config(byte_dataset, whole, max_steps=6, optim=muon), show_progress=False)
    train(config(byte_dataset, split, max_steps=3, optim=muon, checkpoint_every=3),
          show_progress=False)  # fmt: skip
    train(config(byte_dataset, split, max_steps=6, optim=muon), show_progress=False)
    losses = {
        run: [r["loss"] for r in read_metrics(run / "metrics.jsonl")] for run in (whole, split)
    }
    assert losses[whole] == losses[split]  # Muon's momentum came back with the checkpoint
    assert losses[whole][-1] < losses[whole][0]
    with pytest.raises(ConfigError, match="optimizer=muon, this run asks for adamw.*back to muon"):
        train(config(byte_dataset, split, max_steps=8), show_progress=False)


def test_the_tiny_preset_trains_with_muon_unless_weights_are_sharded_or_adapted(tmp_path):
    assert TrainConfig.from_dict({"preset": "tiny"}).optim.optimizer == "muon"
    assert TrainConfig.from_dict({"preset": "small"}).optim.optimizer == "adamw"
    sharded = TrainConfig.from_dict({"preset": "tiny", "parallel": {"fsdp": True}})
    assert sharded.optim.optimizer == "adamw"  # the preset's Muon gives way
    adapted = TrainConfig.from_dict({"preset": "tiny", "lora": 4, "init_from": str(tmp_path)})
    assert adapted.optim.optimizer == "adamw"
    asked = TrainConfig.from_dict(
        {"preset": "tiny", "parallel": {"tp": 2}, "optim": {"optimizer": "muon"}}
    )
    with pytest.raises(ConfigError, match="muon .* not with tp .*tiny preset.* --optimizer adamw"):
        asked.check_fine_tuning()
    from_preset = TrainConfig.from_dict({"preset": "1.3b", "optim": OptimConfig(optimizer="muon")})
    with pytest.raises(ConfigError, match="not with fsdp .*1.3b preset.*parallel.fsdp: false"):
        from_preset.check_fine_tuning()
    with pytest.raises(ConfigError, match="optim.optimizer must be one of adamw, muon"):
        OptimConfig(optimizer="sgd")
