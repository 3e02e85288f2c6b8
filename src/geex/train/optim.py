"""AdamW with CodeGeeX's parameter groups, and the learning-rate schedule."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.distributed.tensor import DTensor

from geex.train.config import OptimConfig


def parameter_groups(model: nn.Module, config: OptimConfig) -> list[dict]:
    """Weight decay on matmul weights (and embeddings if configured); never on biases or
    LayerNorm parameters, whose scale decay would only fight."""
    decay, no_decay = [], []
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            if not param.requires_grad:
                continue
            exempt = name == "bias" or isinstance(module, nn.LayerNorm)
            if isinstance(module, nn.Embedding):
                exempt = not config.decay_embeddings
            (no_decay if exempt else decay).append(param)
    return [
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def build_optimizer(model: nn.Module, config: OptimConfig) -> torch.optim.AdamW:
    # Under tensor parallel alone, sharded weights are DTensors and replicated ones (LayerNorm,
    # embeddings) plain tensors; foreach kernels take one kind at a time, so each gets a group.
    groups = []
    for group in parameter_groups(model, config):
        for is_dtensor in (False, True):
            params = [p for p in group["params"] if isinstance(p, DTensor) == is_dtensor]
            if params:
                groups.append({**group, "params": params})
    # The fused kernel updates each parameter in one pass over it, where foreach makes about
    # ten (on a CPU, one tensor at a time): the same AdamW, 4x faster on 2 CPU cores
    # (docs/benchmarks.md). It takes no DTensor parameters on a CPU, so sharded runs keep
    # foreach, which still keeps the step to a few kernels on a GPU.
    sharded = any(isinstance(p, DTensor) for group in groups for p in group["params"])
    kernel = {"foreach": True} if sharded else {"fused": True}
    return torch.optim.AdamW(groups, lr=config.lr, betas=config.betas, eps=config.eps, **kernel)


def learning_rate(
    step: int, config: OptimConfig, max_steps: int | None, time_fraction: float | None = None
) -> float:
    """Linear warm-up to ``lr`` over ``warmup_steps``, then cosine decay to ``min_lr`` at
    ``decay_steps`` (default: the run's last step), flat after that. Under a time budget the
    cosine follows ``time_fraction``, the share of the time after warm-up spent, instead of
    steps."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    if time_fraction is not None and not config.decay_steps:
        progress = min(1.0, time_fraction)
    else:
        decay_steps = config.decay_steps or max_steps
        if not decay_steps or decay_steps <= config.warmup_steps:
            return config.lr
        progress = min(1.0, (step - config.warmup_steps) / (decay_steps - config.warmup_steps))
    return config.min_lr + 0.5 * (config.lr - config.min_lr) * (1 + math.cos(math.pi * progress))
