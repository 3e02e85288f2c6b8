"""CodeGeeX's optimizer groups, schedule and fp16 loss scaling. `pytest tests/train`."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from geex.errors import ConfigError
from geex.model import ModelConfig, build_model
from geex.train.config import OptimConfig, TrainConfig
from geex.train.optim import build_optimizer, learning_rate, parameter_groups
from geex.train.precision import DynamicLossScaler

MODEL = ModelConfig(n_layer=2, n_head=2, d_model=16, max_seq_len=8, vocab_size=32)


def names_in(group, model):
    ids = {id(p) for p in group["params"]}
    return {name for name, p in model.named_parameters() if id(p) in ids}


def test_no_weight_decay_on_biases_and_layernorms_embeddings_as_configured():
    model = build_model(MODEL)
    decay, no_decay = parameter_groups(model, OptimConfig())
    decayed = names_in(decay, model)
    assert "layers.0.attention.query.weight" in decayed and "word_embeddings.weight" in decayed
    assert all(not n.endswith("bias") and "layernorm" not in n for n in decayed)
    assert "final_layernorm.weight" in names_in(no_decay, model)
    _, no_decay = parameter_groups(model, OptimConfig(decay_embeddings=False))
    assert {"word_embeddings.weight", "top_query_embeddings.weight"} <= names_in(no_decay, model)
    optimizer = build_optimizer(model, OptimConfig())
    assert optimizer.defaults["betas"] == (0.9, 0.95) and optimizer.defaults["eps"] == 1e-8


def test_warmup_then_cosine_to_the_floor():
    config = OptimConfig(lr=1.0, min_lr=0.1, warmup_steps=10)
    assert learning_rate(0, config, 110) == pytest.approx(0.1)
    assert learning_rate(9, config, 110) == pytest.approx(1.0)
    assert learning_rate(60, config, 110) == pytest.approx(0.55)  # halfway down the cosine
    assert learning_rate(110, config, 110) == pytest.approx(0.1)
    assert learning_rate(500, config, 110) == pytest.approx(0.1)
    rates = [learning_rate(s, config, 110) for s in range(10, 111)]
    assert all(a >= b for a, b in itertools.pairwise(rates))


def test_loss_scale_halves_after_overflows_and_grows_after_good_steps():
    scaler = DynamicLossScaler(initial_scale=1024, growth_interval=3, hysteresis=2)
    scaler.update(overflow=True)
    assert scaler.scale == 1024  # hysteresis: one overflow is forgiven
    scaler.update(overflow=True)
    assert scaler.scale == 512
    for _ in range(3):
        scaler.update(overflow=False)
    assert scaler.scale == 1024
    restored = DynamicLossScaler()
    restored.load_state_dict(scaler.state_dict())
    assert restored.state_dict() == scaler.state_dict()


def test_config_typos_name_the_field_and_the_valid_ones():
    with pytest.raises(ConfigError, match="unknown train config field.*max_step\\b.*valid fields"):
        TrainConfig.from_dict({"max_step": 3})
    with pytest.raises(ConfigError, match="unknown train config field .optim.warmup. "):
        TrainConfig.from_dict({"optim": {"warmup": 3}})
    with pytest.raises(ConfigError, match="precision must be one of"):
        TrainConfig(precision="fp8")
    assert math.isfinite(TrainConfig().optim.lr)


def test_adamw_runs_the_fused_kernel_and_updates_like_the_foreach_one():
    """The fused kernel is the same AdamW: equal weights after a few steps, up to rounding."""
    config = OptimConfig(lr=1e-2, weight_decay=0.1, eps=1e-6)
    models = [build_model(MODEL, seed=0) for _ in range(2)]
    fused = build_optimizer(models[0], config)
    foreach = torch.optim.AdamW(
        parameter_groups(models[1], config),
        lr=config.lr,
        betas=config.betas,
        eps=config.eps,
        weight_decay=config.weight_decay,
        foreach=True,
    )
    assert fused.defaults["fused"]
    inputs = torch.randint(0, MODEL.vocab_size, (2, 8))
    for _ in range(3):
        for model, optimizer in zip(models, (fused, foreach), strict=True):
            model(inputs).float().pow(2).mean().backward()
            optimizer.step()
            optimizer.zero_grad()
    for (name, a), b in zip(models[0].named_parameters(), models[1].parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)
