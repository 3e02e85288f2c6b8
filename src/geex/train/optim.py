"""AdamW with CodeGeeX's parameter groups, Muon beside it, and the learning-rate schedule."""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import nn
from torch.distributed.tensor import DTensor

from geex.train.config import OptimConfig


class Optimizers(tuple):
    """Optimizers stepped as one, each over its own parameters: the trainer sets every group's
    learning rate and steps them together, and torch's distributed checkpoint saves and loads
    a sequence of optimizers as one state."""

    @property
    def param_groups(self) -> list[dict]:
        return [group for optimizer in self for group in optimizer.param_groups]

    def step(self) -> None:
        for optimizer in self:
            optimizer.step()

    def zero_grad(self, set_to_none: bool = True) -> None:
        for optimizer in self:
            optimizer.zero_grad(set_to_none=set_to_none)


def muon_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The matmul weights of the blocks and the top query layer: the hidden 2-D matrices Muon
    is for. Embeddings (the head is tied to the word embeddings), biases and LayerNorms are
    AdamW's."""
    return [
        module.weight
        for module in model.modules()
        if isinstance(module, nn.Linear) and module.weight.requires_grad
    ]


def parameter_groups(
    model: nn.Module, config: OptimConfig, leave_out: Iterable[nn.Parameter] = ()
) -> list[dict]:
    """Weight decay on matmul weights (and embeddings if configured); never on biases or
    LayerNorm parameters, whose scale decay would only fight."""
    decay, no_decay = [], []
    left_out = {id(p) for p in leave_out}
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            if not param.requires_grad or id(param) in left_out:
                continue
            exempt = name == "bias" or isinstance(module, nn.LayerNorm)
            if isinstance(module, nn.Embedding):
                exempt = not config.decay_embeddings
            (no_decay if exempt else decay).append(param)
    return [
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def build_optimizer(model: nn.Module, config: OptimConfig) -> torch.optim.Optimizer | Optimizers:
    """``config.optimizer``'s optimizer over the model's trainable parameters.

    Muon (torch's, Keller Jordan's algorithm) takes the hidden matrices: momentum, then the
    update orthogonalised by Newton-Schulz iterations, scaled as Moonshot's "match_rms_adamw"
    does so that AdamW's learning rate and weight decay carry over; AdamW takes the rest. On
    the 10-minute CPU run it reached the same validation loss in fewer steps than AdamW at the
    same rate (docs/training.md). It needs each weight whole on its rank: no tp, fsdp or LoRA
    (TrainConfig.check_fine_tuning)."""
    if config.optimizer != "muon":
        return _adamw(model, config)
    hidden = muon_parameters(model)
    if any(isinstance(p, DTensor) for p in hidden):
        raise ValueError("Muon needs whole weights on each rank; these are sharded (DTensor)")
    muon = torch.optim.Muon(
        hidden, lr=config.lr, weight_decay=config.weight_decay, adjust_lr_fn="match_rms_adamw"
    )
    return Optimizers((muon, _adamw(model, config, leave_out=hidden)))


def _adamw(
    model: nn.Module, config: OptimConfig, leave_out: Iterable[nn.Parameter] = ()
) -> torch.optim.AdamW:
    # Under tensor parallel alone, sharded weights are DTensors and replicated ones (LayerNorm,
    # embeddings) plain tensors; foreach kernels take one kind at a time, so each gets a group.
    groups = []
    for group in parameter_groups(model, config, leave_out):
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
