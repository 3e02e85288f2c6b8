"""The global gradient norm for clipping, in one all-reduce whatever the layout.

Under tensor parallel and FSDP most gradients are DTensors. Asking each for its
``full_tensor()`` costs one blocking collective per parameter (about 490 a step for
CodeGeeX-13B). Instead every rank sums the squares of the gradient values it holds, weighs each
sum by how many ranks hold that same slice (a replicated slice is counted once over the world,
not once per copy), and one all-reduce over all ranks adds the weighted sums.

That weighting assumes every rank holds one copy of the whole model's layout: a DTensor whose
mesh spans only part of the world (FSDP over the data-parallel ranks of one tensor-parallel
column, a tensor-parallel group) has its copies on the other parts of the world. Data,
tensor and FSDP parallelism, the layouts Geex builds, all keep that true.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch.distributed.tensor import DTensor, Replicate


def global_norm(grads: list[torch.Tensor]) -> float:
    """The L2 norm of all ``grads`` together, the same number on every rank.

    Plain tensors are taken as replicated on every rank (one process, DDP after its
    all-reduce, the replicated parameters of tensor parallel). Without any DTensor no
    collective is needed, and none is made.
    """
    if not grads:
        return 0.0
    sharded = any(isinstance(g, DTensor) for g in grads)
    copies_everywhere = dist.get_world_size() if sharded else 1
    total = torch.zeros((), dtype=torch.float32, device=_local(grads[0]).device)
    for copies, tensors in _grouped_by_copies(grads, copies_everywhere).items():
        total += _sum_of_squares(tensors) / copies
    if sharded:
        dist.all_reduce(total)  # the one collective
    return float(total.sqrt())


def _grouped_by_copies(grads, copies_everywhere: int) -> dict[int, list[torch.Tensor]]:
    """The local tensors of ``grads``, keyed by how many ranks of the world hold each."""
    groups: dict[int, list[torch.Tensor]] = {}
    for g in grads:
        copies = copies_everywhere
        if isinstance(g, DTensor):
            g = _without_partial(g)
            copies = copies_everywhere // _distinct_slices(g)
        groups.setdefault(copies, []).append(_local(g))
    return groups


def _distinct_slices(g: DTensor) -> int:
    """Into how many different pieces the mesh cuts ``g``: every mesh dimension that does not
    replicate it splits it (``Shard``, and FSDP's ``_StridedShard`` under tensor parallel,
    which is no ``Shard`` to ``is_shard()``)."""
    mesh = g.device_mesh
    slices = 1
    for dim, placement in enumerate(g.placements):
        if not placement.is_replicate():
            slices *= mesh.size(dim)
    return slices


def _without_partial(g: DTensor) -> DTensor:
    """A pending (partial) sum's pieces do not add up to the norm: reduce them first. The
    layouts Geex builds leave no partial gradient, so this costs nothing in practice."""
    if not any(p.is_partial() for p in g.placements):
        return g
    placements = [Replicate() if p.is_partial() else p for p in g.placements]
    return g.redistribute(placements=placements)


def _sum_of_squares(tensors: list[torch.Tensor]) -> torch.Tensor:
    """Σ x² over ``tensors``, accumulated in fp32: one fused kernel for the norms of all of
    them where the device has one (``get_total_norm`` picks torch's foreach kernel)."""
    tensors = [t if t.dtype == torch.float32 else t.float() for t in tensors]
    return torch.nn.utils.get_total_norm(tensors, norm_type=2.0).float().pow(2)


def _local(g: torch.Tensor) -> torch.Tensor:
    return g.to_local() if isinstance(g, DTensor) else g
