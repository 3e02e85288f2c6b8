"""The vocabulary split over tensor-parallel ranks, as CodeGeeX's ``VocabParallelEmbedding``.

Each of the ``tp`` ranks holds ``padded_vocab_size / tp`` rows of the word embeddings. A lookup
finds the tokens that fall in the rank's rows (zeros for the others) and one all-reduce sums
the ranks' partial embeddings. The output head is tied to the same rows, so each rank computes
the logits of its vocabulary slice only, and the loss combines the slices without gathering
them (:mod:`geex.model.loss`).

The two position tables (the input's, and the top query layer's, which gives that layer its
queries) are split the same way, by rows, which are positions. Their lookups are
``(1, seq, d)``, a batch's worth smaller than a block's all-reduces, and in exchange each rank
keeps ``1 / tp`` of the tables, of their gradients and of AdamW's state for them.

torch's ``RowwiseParallel`` on an ``nn.Embedding`` splits the rows too, but its backward
builds the gradient of the whole table on every rank before keeping its slice (DTensor has no
row-sharded strategy for ``embedding_dense_backward``): for CodeGeeX-13B a 1 GiB fp32 tensor
per rank per step. The lookup below differentiates through the rank's rows only.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.tensor import Replicate, Shard, distribute_tensor
from torch.distributed.tensor.parallel import PrepareModuleOutput, parallelize_module

from geex.errors import ConfigError
from geex.model.config import ModelConfig

ROW_SPLIT_TABLES = ("word_embeddings", "position_embeddings", "top_query_embeddings")


class RowParallelEmbedding(nn.Embedding):
    """An ``nn.Embedding`` whose ``weight`` is a DTensor sharded by rows over one mesh dimension.

    :func:`split_vocabulary` turns a model's tables into these in place (as FSDP2 changes a
    module's class), so parameter names and checkpoints stay those of the plain model.
    """

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        mesh = self.weight.device_mesh
        rows = self.weight.to_local()
        local = ids - mesh.get_local_rank() * rows.shape[0]
        elsewhere = (local < 0) | (local >= rows.shape[0])
        found = F.embedding(local.masked_fill(elsewhere, 0), rows)
        return _SumOverRanks.apply(found.masked_fill(elsewhere[..., None], 0.0), mesh.get_group())


class _SumOverRanks(torch.autograd.Function):
    """All-reduce forward; identity backward, since every rank receives the same (replicated)
    gradient of the sum: Megatron's ``reduce_from_tensor_model_parallel_region``."""

    @staticmethod
    def forward(ctx, partial, group):
        total = partial.clone()
        dist.all_reduce(total, group=group)
        return total

    @staticmethod
    def backward(ctx, grad):
        return grad, None


def split_vocabulary(model: nn.Module, tp_mesh: DeviceMesh) -> None:
    """Split the word embeddings (and the tied head) and the position tables by rows over
    ``tp_mesh``; keep the top query layer's output a replicated DTensor, so that the tied head
    multiplies it by the word embeddings' rows into logits sharded by vocabulary (``Shard(-1)``)."""
    for name in ROW_SPLIT_TABLES:
        table = model.get_submodule(name)
        weight = distribute_tensor(table.weight, tp_mesh, [Shard(0)])
        table.register_parameter("weight", nn.Parameter(weight))
        table.__class__ = RowParallelEmbedding
    keep_distributed = PrepareModuleOutput(
        output_layouts=Replicate(), desired_output_layouts=Replicate(), use_local_output=False
    )
    parallelize_module(model.top_query_layer, tp_mesh, keep_distributed)


def check_divides(config: ModelConfig, tp: int) -> None:
    """Refuse a tensor-parallel degree the tables do not split into equal slices by."""
    for field, rows in (
        ("padded_vocab_size", config.padded_vocab_size),
        ("max_seq_len", config.max_seq_len),
    ):
        if rows % tp:
            raise ConfigError(
                f"parallel.tp={tp} must divide model.{field} ({rows}): each tensor-parallel "
                f"rank holds an equal slice of its rows; make it a multiple of {tp}"
            )
