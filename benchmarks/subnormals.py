"""Where subnormal floats arise in a training step: a count per operator, Geex and the plain GPT.

Subnormals (below 1.2e-38 in fp32) make x86 cores slow; ``train_step.py --flush-denormals``
measures what they cost, this finds where they come from. Each model first takes ``--settle``
AdamW steps on random targets at the preset's learning rate, then one more step runs under a
dispatch mode that counts, for every ATen operator the step calls (forward, backward and the
optimiser's), the subnormal values in its outputs. The fused AdamW updates the weights and its
moments in place and returns nothing, so after the step the weights and every tensor of the
optimiser's state are counted too. Run it without flushing: a flushed process makes none.

    python benchmarks/subnormals.py                     # tiny, 8 settling steps
    python benchmarks/subnormals.py --settle 30 --preset small
"""

from __future__ import annotations

import argparse
from collections import Counter

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from geex.model import build_model
from geex.presets import MODEL_PRESETS, model_preset
from geex.train.optim import build_optimizer
from plain_gpt import PlainGPT, plain_adamw
from side_by_side import preset_optim


def subnormals_in(tensor: torch.Tensor) -> int:
    values = tensor.detach().float()
    return int(((values != 0) & (values.abs() < torch.finfo(torch.float32).tiny)).sum())


class SubnormalCount(TorchDispatchMode):
    """Subnormal values in the outputs of every operator, and all their values, by name."""

    def __init__(self):
        super().__init__()
        self.subnormal, self.values = Counter(), Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for tensor in tree_flatten(out)[0]:
            if isinstance(tensor, torch.Tensor) and tensor.is_floating_point():
                self.subnormal[str(func)] += subnormals_in(tensor)
                self.values[str(func)] += tensor.numel()
        return out


def train_step(config, args, optimizer, loss_of) -> None:
    tokens = torch.randint(0, config.vocab_size, (args.batch_size, args.seq_len + 1))
    loss_of(tokens[:, :-1], tokens[:, 1:]).backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="tiny", choices=sorted(MODEL_PRESETS))
    parser.add_argument("--settle", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seq-len", type=int, default=256)
    args = parser.parse_args()
    config = model_preset(args.preset)
    optim = preset_optim(args.preset)  # AdamW in both, as the step benchmarks compare them
    torch.manual_seed(0)

    geex = build_model(config)
    plain = PlainGPT(config)
    models = {
        "Geex": (geex, build_optimizer(geex, optim), lambda x, y: geex(x, targets=y)),
        "plain GPT": (plain, plain_adamw(plain, optim), plain),
    }
    for name, (model, optimizer, loss_of) in models.items():
        model.train()
        for _ in range(args.settle):
            train_step(config, args, optimizer, loss_of)
        with SubnormalCount() as count:
            train_step(config, args, optimizer, loss_of)
        found = [(op, n) for op, n in count.subnormal.most_common() if n]
        total = sum(count.values.values())
        print(f"{name}: {sum(n for _, n in found):,} subnormal values among {total:,} outputs")
        for op, n in found:
            print(f"  {op}: {n:,} of {count.values[op]:,}")
        for label, tensors in state_after_step(model, optimizer).items():
            found = sum(subnormals_in(t) for t in tensors)
            print(f"  after the step, {label}: {found:,} of {sum(t.numel() for t in tensors):,}")


def state_after_step(model, optimizer) -> dict[str, list[torch.Tensor]]:
    """The weights and each kind of optimiser state (exp_avg, exp_avg_sq), as the step left them."""
    kinds = {"weights": list(model.parameters())}
    for state in optimizer.state.values():
        for key, value in state.items():
            if isinstance(value, torch.Tensor) and value.is_floating_point() and value.dim():
                kinds.setdefault(key, []).append(value)
    return kinds


if __name__ == "__main__":
    main()
