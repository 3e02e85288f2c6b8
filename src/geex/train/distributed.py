"""The process group and device mesh of a run, from ``torchrun``'s environment.

A plain ``geex train`` is a world of one and needs no process group; under ``torchrun`` (or
``geex train --nproc N``, which calls it) every process joins one group, NCCL on GPUs and gloo
on CPUs, and the ranks form a 2-D mesh ``(dp, tp)``: tensor-parallel groups of consecutive
ranks (inside a node, where the bandwidth is), data parallel across them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.distributed.device_mesh import DeviceMesh, init_device_mesh

from geex.errors import ConfigError
from geex.model.device import resolve_device


@dataclass
class World:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    mesh: DeviceMesh | None  # None in a world of one
    tp: int

    @property
    def dp(self) -> int:
        return self.world_size // self.tp

    @property
    def dp_rank(self) -> int:
        return self.rank // self.tp

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.mesh is not None:
            dist.barrier()

    def all_reduce_max(self, value: float) -> float:
        if self.mesh is None:
            return value
        t = torch.tensor([value], dtype=torch.float64, device=self.comm_device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return float(t.item())

    def broadcast_object(self, obj):
        if self.mesh is None:
            return obj
        holder = [obj]
        dist.broadcast_object_list(holder, src=0)
        return holder[0]

    @property
    def comm_device(self) -> torch.device:
        return self.device if dist.get_backend() == "nccl" else torch.device("cpu")


def init_world(device: str = "auto", tp: int = 1) -> World:
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if world_size % tp:
        raise ConfigError(f"parallel.tp={tp} does not divide the world size {world_size}")
    resolved = resolve_device(device)
    if resolved.type == "cuda":
        resolved = torch.device("cuda", local_rank)
        torch.cuda.set_device(resolved)
    if world_size == 1:
        return World(0, 1, 0, resolved, None, 1)
    if not dist.is_initialized():
        backend = "nccl" if resolved.type == "cuda" else "gloo"
        dist.init_process_group(backend, device_id=resolved if backend == "nccl" else None)
    mesh = init_device_mesh(resolved.type, (world_size // tp, tp), mesh_dim_names=("dp", "tp"))
    return World(rank, world_size, local_rank, resolved, mesh, tp)


def close_world(world: World, *, finished: bool = True) -> None:
    """Leave the process group. After a finished run every rank first waits for the others:
    a rank that tears gloo down while a peer still has its last collective in flight kills
    that peer (``terminate called without an active exception``). After a failure the peers
    may never arrive, so there is no barrier then."""
    if world.mesh is None or not dist.is_initialized():
        return
    if finished:
        dist.barrier()
    dist.destroy_process_group()
