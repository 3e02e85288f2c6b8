"""The global gradient norm costs one all-reduce on 4 gloo ranks and equals the one-process norm.

Each layout shards a small CodeGeeX the way training does (FSDP x TP, FSDP alone, TP with the
rest replicated), gives every parameter the same seeded gradient a single process would hold,
and counts the collectives of the norm with CommDebugMode.
`pytest tests/train/test_grad_norm.py`.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import zlib
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.tensor import DTensor, Partial, Shard, distribute_tensor
from torch.distributed.tensor.debug import CommDebugMode
from torch.distributed.tensor.parallel import parallelize_module

from geex.model.codegeex import build_model
from geex.presets import model_preset
from geex.train.config import ParallelConfig
from geex.train.distributed import close_world, init_world
from geex.train.grad_norm import global_norm
from geex.train.parallel import BLOCK_TP_PLAN, blocks, parallelize
from tests.train.runs import SMALL_MODEL

MODEL = model_preset("tiny").replace(**SMALL_MODEL, vocab_size=256)
REPO = Path(__file__).resolve().parents[2]


def seeded_gradient(name: str, shape: torch.Size) -> torch.Tensor:
    """The full gradient of parameter ``name``: the same on every rank and in one process."""
    generator = torch.Generator().manual_seed(zlib.crc32(name.encode()))
    return torch.randn(shape, generator=generator)


def single_process_norm() -> float:
    model = build_model(MODEL, device="meta")
    return global_norm([seeded_gradient(n, p.shape) for n, p in model.named_parameters()])


def test_plain_gradients_need_no_collective_and_match_the_definition():
    grads = [torch.randn(3, 4), torch.randn(7), torch.randn(2, 2, 2)]
    expected = torch.linalg.vector_norm(torch.cat([g.flatten() for g in grads]))
    assert math.isclose(global_norm(grads), float(expected), rel_tol=1e-6)
    assert global_norm([]) == 0.0


def test_an_overflowed_gradient_gives_a_non_finite_norm():
    """The fp16 loss scaler skips a step on exactly this."""
    assert math.isinf(global_norm([torch.ones(3), torch.tensor([float("inf")])]))
    assert math.isnan(global_norm([torch.ones(3), torch.tensor([float("nan")])]))


def test_sharded_norm_is_one_all_reduce_and_equals_the_single_process_norm(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc_per_node=4", "-m", "tests.train.test_grad_norm", str(tmp_path)]  # fmt: skip
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    expected = single_process_norm()
    for rank in range(4):
        layouts = json.loads((tmp_path / f"rank-{rank}.json").read_text())
        assert set(layouts) == {"fsdp x tp", "fsdp", "tp", "fsdp x tp + a partial gradient"}
        for name, seen in layouts.items():
            want = math.sqrt(expected**2 + seen.get("extra_square", 0.0))
            assert math.isclose(seen["norm"], want, rel_tol=1e-6), (rank, name, seen)
            if name != "fsdp x tp + a partial gradient":
                # Asking each DTensor for its full_tensor() took one collective apiece.
                assert seen["sharded_grads"] >= 10, (rank, name, seen)
                assert seen["collectives"] == 1, (rank, name, seen)


# -- the worker: run by torchrun (python -m tests.train.test_grad_norm OUT) ---------------------


def _layouts():
    def tp_only(model, world):  # what a tp-only run builds: blocks split, the rest plain
        for _, _, block in blocks(model):
            parallelize_module(block, world.mesh["tp"], BLOCK_TP_PLAN)

    return {
        "fsdp x tp": lambda m, w: parallelize(m, w, ParallelConfig(tp=2, fsdp=True)),
        "fsdp": lambda m, w: parallelize(m, w, ParallelConfig(tp=1, fsdp=True)),
        "tp": tp_only,
    }


def _sharded_gradients(model: nn.Module) -> list[torch.Tensor]:
    grads = []
    for name, param in model.named_parameters():
        full = seeded_gradient(name, param.shape)
        if isinstance(param, DTensor):
            full = distribute_tensor(full, param.device_mesh, param.placements, src_data_rank=None)
        param.grad = full
        grads.append(full)
    return grads


def _worker(out: Path) -> None:
    world = init_world("cpu", tp=2)
    report = {}
    for name, apply in _layouts().items():
        model = build_model(MODEL, device="meta")
        apply(model, world)
        model.to_empty(device="cpu")
        grads = _sharded_gradients(model)
        with CommDebugMode() as comms:
            norm = global_norm(grads)
        report[name] = {
            "norm": norm,
            "collectives": comms.get_total_counts(),
            "sharded_grads": sum(isinstance(g, DTensor) for g in grads),
        }
        if name == "fsdp x tp":
            # A pending sum over dp (each dp rank holds half of it), split over tp.
            full = seeded_gradient("partial", torch.Size([4, 6]))
            local = full.chunk(2)[world.rank % 2] / 2
            partial = DTensor.from_local(local, world.mesh, [Partial(), Shard(0)])
            report[f"{name} + a partial gradient"] = {
                "norm": global_norm([*grads, partial]),
                "extra_square": float(full.pow(2).sum()),
            }
    (out / f"rank-{dist.get_rank()}.json").write_text(json.dumps(report))
    close_world(world)


if __name__ == "__main__":
    _worker(Path(sys.argv[1]))
