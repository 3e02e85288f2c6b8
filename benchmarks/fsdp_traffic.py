"""The bytes FSDP2 moves in one training micro-step, per precision: all-gathers and reduce-scatters.

Run under torchrun (gloo on CPU is enough: bytes do not depend on the device):

    torchrun --standalone --nproc_per_node 2 benchmarks/fsdp_traffic.py --preset tiny

Each precision builds the preset sharded as ``geex train --fsdp --precision P`` does
(:func:`geex.train.parallel.parallelize`), runs one forward and backward on random tokens, and
counts the bytes of every all-gather's output and every reduce-scatter's input on this rank,
from the collectives torch dispatches. Under bf16 or fp16 the all-gathers carry half of fp32's
bytes (FSDP2 casts each shard before gathering it); the reduce-scatters stay fp32. Rank 0
prints a table, or one JSON object with ``--json``.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter

import torch
from torch.utils._python_dispatch import TorchDispatchMode

GATHERS = ("allgather", "all_gather")
SCATTERS = ("reduce_scatter",)


class CollectiveBytes(TorchDispatchMode):
    """Counts the bytes of the all-gathers and reduce-scatters dispatched while it is on."""

    def __init__(self):
        super().__init__()
        self.bytes = Counter()
        self.dtypes: dict[str, set[str]] = {"all_gather": set(), "reduce_scatter": set()}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.__name__
        if func.namespace in ("c10d", "_c10d_functional"):
            if any(g in name for g in GATHERS):
                self._count("all_gather", args[0])  # the gathered output
            elif any(s in name for s in SCATTERS):
                self._count("reduce_scatter", args[1])  # the unreduced input
        return func(*args, **(kwargs or {}))

    def _count(self, kind: str, tensors) -> None:
        for t in _flat_tensors(tensors):
            self.bytes[kind] += t.numel() * t.element_size()
            self.dtypes[kind].add(str(t.dtype).removeprefix("torch."))


def _flat_tensors(value):
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in _flat_tensors(v)]
    return []


def measure(preset: str, precision: str, world, seq_len: int) -> dict:
    from geex.model.codegeex import build_model
    from geex.presets import model_preset
    from geex.train.config import ParallelConfig
    from geex.train.parallel import materialize, parallelize

    config = model_preset(preset).replace(max_seq_len=seq_len)
    model = build_model(config, device="meta")
    parallelize(model, world, ParallelConfig(fsdp=True), precision)
    materialize(model, world.device, seed=0)
    tokens = torch.randint(0, config.vocab_size, (1, seq_len + 1), generator=torch.Generator())
    counter = CollectiveBytes()
    with counter:
        loss = model(tokens[:, :-1], targets=tokens[:, 1:])
        loss.backward()
    sharded = {str(p.dtype).removeprefix("torch.") for p in model.parameters()}
    grads = {str(p.grad.dtype).removeprefix("torch.") for p in model.parameters()}
    return {
        "all_gather_bytes": counter.bytes["all_gather"],
        "reduce_scatter_bytes": counter.bytes["reduce_scatter"],
        "all_gather_dtypes": sorted(counter.dtypes["all_gather"]),
        "reduce_scatter_dtypes": sorted(counter.dtypes["reduce_scatter"]),
        "sharded_parameter_dtypes": sorted(sharded),
        "sharded_gradient_dtypes": sorted(grads),
        "loss": float(loss),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--seq-len", type=int, default=64)
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16", "fp16"])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    from geex.train.distributed import close_world, init_world

    world = init_world("cpu")
    rows = {p: measure(args.preset, p, world, args.seq_len) for p in args.precisions}
    close_world(world)
    if world.rank:
        return
    if args.json:
        print(json.dumps(rows))
        return
    print(f"{args.preset}, {world.world_size} ranks, one micro-step, bytes on rank 0")
    print(f"{'precision':<10}{'all-gather':>16}{'reduce-scatter':>16}  gathered / scattered")
    for p, r in rows.items():
        dtypes = f"{'+'.join(r['all_gather_dtypes'])} / {'+'.join(r['reduce_scatter_dtypes'])}"
        line = f"{p:<10}{r['all_gather_bytes']:>16,}{r['reduce_scatter_bytes']:>16,}  {dtypes}"
        print(line)


if __name__ == "__main__":
    main()
