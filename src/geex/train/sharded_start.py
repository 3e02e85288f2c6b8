"""A sharded run's start: each rank computes, or reads, the elements of its own shards only.

At CodeGeeX-13B a parameter's full value on every rank (12.9B values, 52 GB of fp32) and a
whole state dict per rank (8 copies of the checkpoint in one node's host memory) are what
stop a start. Here a rank learns which global rows and columns its shard of a parameter holds
(:func:`shard_indices`, from DTensor's own sharding of an index), then either draws its
initial value a bounded block of rows at a time and keeps those elements
(:func:`local_initial_value`), or reads those rows and columns from the checkpoint's
safetensors files (:func:`load_sharded_weights`). A placement that does not split a tensor
into rows and columns is given its value by rank 0, one tensor at a time.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
from torch.distributed.tensor import DTensor, Replicate, Shard, distribute_tensor
from torch.distributed.tensor.placement_types import _StridedShard
from torch.nn import Module

from geex.model.checkpoint import SliceReader, clean_name
from geex.model.codegeex import CodeGeeX


def shard_indices(param: DTensor) -> list[torch.Tensor] | None:
    """For each dimension of ``param``, the global indices its local shard holds, in the
    local shard's order; None when a placement is neither a shard nor a replica.

    Each dimension's indices come from distributing ``arange(size)`` with the placements that
    split that dimension (FSDP's strided shard over tensor parallel's included), the others
    made replicas: the same arithmetic DTensor applies to the values, so the shard's elements
    are those at the product of the indices. Nothing is sent: every rank holds the arange.
    """
    if not all(isinstance(p, (Shard, _StridedShard, Replicate)) for p in param.placements):
        return None
    indices = []
    for dim, size in enumerate(param.shape):
        placements = [_along_first_dim(p, dim, param.dim()) for p in param.placements]
        index = distribute_tensor(
            torch.arange(size, device=param.device), param.device_mesh, placements,
            src_data_rank=None,
        )  # fmt: skip
        indices.append(index.to_local().cpu())
    return indices


def _along_first_dim(placement, dim: int, ndim: int):
    """``placement`` moved to dimension 0 of a 1-D index if it splits ``dim``, else a replica."""
    if isinstance(placement, (Shard, _StridedShard)) and placement.dim % ndim == dim:
        if isinstance(placement, _StridedShard):
            return _StridedShard(0, split_factor=placement.split_factor)
        return Shard(0)
    return Replicate()


def local_initial_value(
    model: CodeGeeX, name: str, seed: int, indices: list[torch.Tensor]
) -> torch.Tensor:
    """The elements of parameter ``name``'s initial value at ``indices`` (see
    :func:`shard_indices`), drawn a block of rows at a time up to the last row needed: the
    rank holds its shard and one block, never the whole parameter."""
    rows, *others = indices
    local = torch.empty(len(rows), *(len(i) for i in others))
    if len(rows) == 0:
        return local
    for first, block in model.initial_row_blocks(name, seed, stop_row=int(rows.max()) + 1):
        hit = torch.nonzero((rows >= first) & (rows < first + len(block))).flatten()
        if len(hit) == 0:
            continue
        picked = block[rows[hit] - first]
        for dim, index in enumerate(others, start=1):
            picked = picked.index_select(dim, index)
        local[hit] = picked
    return local


def as_shard(local: torch.Tensor, like: DTensor) -> DTensor:
    """``local`` as this rank's shard of a DTensor laid out like ``like``."""
    return DTensor.from_local(
        local, like.device_mesh, like.placements, run_check=False,
        shape=like.shape, stride=like.stride(),
    )  # fmt: skip


@torch.no_grad()
def load_sharded_weights(model: Module, folder: str | os.PathLike) -> None:
    """Fine-tuning start: every parameter of a (sharded) model from a Geex checkpoint folder.

    A DTensor parameter's rank reads the rows and columns of its shard from the safetensors
    files; a plain one (one process, or DDP, whose ranks each hold the whole model) reads the
    whole tensor. Either way one tensor at a time, cast to the parameter's dtype on its
    device, so a rank holds its parameters plus one tensor's slice in the stored dtype.
    Names and shapes are checked beforehand (:func:`geex.train.compat.check_init_weights`).
    """
    reader = SliceReader(folder)
    for name, param in model.named_parameters():
        key = clean_name(name)
        if not isinstance(param, DTensor):
            param.copy_(reader.read(key))
            continue
        indices = shard_indices(param)
        if indices is None:
            local = local_shard_from_rank0(reader, key, param)
        else:
            local = reader.read(key, *indices)
        param.copy_(as_shard(local.to(param.device, param.dtype), param))


def local_shard_from_rank0(reader: SliceReader, name: str, param: DTensor) -> torch.Tensor:
    """This rank's shard of tensor ``name``, read whole by rank 0 and broadcast: for a
    placement :func:`shard_indices` cannot express, at the cost of one full tensor per rank
    while it lasts (never a full state dict)."""
    stored = reader.tensors[name]
    if dist.get_rank() == 0:
        full = reader.read(name).to(param.device)
    else:
        full = torch.empty(stored.shape, dtype=stored.dtype, device=param.device)
    dist.broadcast(full, src=0)
    shard = distribute_tensor(full, param.device_mesh, param.placements, src_data_rank=None)
    return shard.to_local().clone()
