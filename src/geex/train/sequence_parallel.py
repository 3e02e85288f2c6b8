"""Sequence parallelism under tensor parallel (Megatron-SP, Korthikanti et al. 2022).

Plain tensor parallel leaves every tensor-parallel rank holding the whole residual stream:
the embeddings' sum, every LayerNorm's input and output, the residual additions and their
dropouts, ``batch x seq x d_model`` each, identical on the ``tp`` ranks. Sequence parallel
splits those regions by sequence instead, so each rank holds ``seq / tp`` positions of them.
The all-reduce after each row-parallel matmul becomes a reduce-scatter onto the rank's
positions, and before each column-parallel matmul an all-gather rebuilds the whole sequence:
the same bytes on the wire as the one all-reduce, and ``1 / tp`` of the activations between
the blocks.

Where the layout changes (``Shard(1)`` is "split by sequence"):

* the word and position embeddings reduce-scatter their vocabulary slices' partial lookups
  onto the rank's positions (:class:`SequenceShardedEmbedding`), where plain tensor parallel
  all-reduces them;
* in every block the LayerNorms run on ``Shard(1)`` (torch's ``SequenceParallel``); attention
  gathers its input once (:class:`GatherAttentionInput`), the MLP its own, and both output
  projections reduce-scatter back to ``Shard(1)``;
* the final LayerNorm runs on ``Shard(1)``; the top query layer's queries, from its position
  table, stay whole (every position queries), its keys and values come from the gathered
  sequence like any block's;
* the top query layer's output is gathered whole again: the vocabulary-parallel loss sums
  each row's softmax terms over the ranks' vocabulary slices, so every rank needs every row.

The model code is untouched: all of it is hooks and DTensor layouts applied from
:func:`geex.train.parallel.parallelize`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.tensor import DTensor, Partial, Replicate, Shard
from torch.distributed.tensor.parallel import (
    ColwiseParallel,
    PrepareModuleInput,
    PrepareModuleOutput,
    RowwiseParallel,
    SequenceParallel,
    parallelize_module,
)
from torch.distributed.tensor.parallel.style import ParallelStyle

from geex.errors import ConfigError
from geex.train.vocab_parallel import RowParallelEmbedding

SEQUENCE_DIM = 1  # (batch, seq, d_model) everywhere between the blocks
SEQUENCE_SHARDED_TABLES = ("word_embeddings", "position_embeddings")


class GatherAttentionInput(ParallelStyle):
    """``PrepareModuleInput`` for ``SelfAttention(x, query_input)``: gather ``x`` from its
    sequence shards once, and hand the same whole tensor as the queries' input when the block
    passed ``x`` for both (an ordinary block). ``PrepareModuleInput`` would gather each
    argument, twice the traffic. The top query layer's queries, from its own position table,
    are whole already and pass through."""

    def _apply(self, module: nn.Module, device_mesh: DeviceMesh) -> nn.Module:
        def gather(_module, args):
            x, query_input = args
            whole = _as_sequence_shards(x, device_mesh).redistribute(device_mesh, [Replicate()])
            return whole, (whole if query_input is x else query_input)

        module.register_forward_pre_hook(gather)
        return module


def _as_sequence_shards(x: torch.Tensor, mesh: DeviceMesh) -> DTensor:
    if isinstance(x, DTensor):
        return x
    return DTensor.from_local(x, mesh, [Shard(SEQUENCE_DIM)], run_check=False)


def block_plan() -> dict[str, ParallelStyle]:
    """The tensor-parallel plan of one block with its LayerNorm regions on sequence shards
    (the matmuls split as ``geex.train.parallel.BLOCK_TP_PLAN`` splits them)."""
    to_sequence = Shard(SEQUENCE_DIM)
    return {
        "input_layernorm": SequenceParallel(),
        "attention": GatherAttentionInput(),
        "attention.query": ColwiseParallel(),
        "attention.key": ColwiseParallel(),
        "attention.value": ColwiseParallel(),
        "attention.dense": RowwiseParallel(output_layouts=to_sequence),
        "post_attention_layernorm": SequenceParallel(),
        "mlp": PrepareModuleInput(
            input_layouts=(to_sequence,), desired_input_layouts=(Replicate(),)
        ),
        "mlp.dense_h_to_4h": ColwiseParallel(),
        "mlp.dense_4h_to_h": RowwiseParallel(output_layouts=to_sequence),
    }


def shard_sequence_outside_blocks(model: nn.Module, tp_mesh: DeviceMesh) -> None:
    """The final LayerNorm on sequence shards, and the top query layer's output gathered whole
    (a replicated DTensor, which the tied head turns into vocabulary-sharded logits).

    Call it after the blocks are parallelized and *before*
    :func:`geex.train.vocab_parallel.split_vocabulary`: that registers a hook taking the top
    query layer's output as already whole, and forward hooks run in the order they were
    registered, so this gather must come first.
    """
    parallelize_module(model.final_layernorm, tp_mesh, SequenceParallel(use_local_output=True))
    gather_output = PrepareModuleOutput(
        output_layouts=Shard(SEQUENCE_DIM),
        desired_output_layouts=Replicate(),
        use_local_output=False,
    )
    parallelize_module(model.top_query_layer, tp_mesh, gather_output)


def shard_embeddings_by_sequence(model: nn.Module) -> None:
    """Turn the word and position tables (already split by rows by ``split_vocabulary``) into
    :class:`SequenceShardedEmbedding`: their sum reaches the first block on sequence shards."""
    for name in SEQUENCE_SHARDED_TABLES:
        table = model.get_submodule(name)
        if not isinstance(table, RowParallelEmbedding):
            raise TypeError(f"{name} must be split by vocabulary rows first (split_vocabulary)")
        table.__class__ = SequenceShardedEmbedding


class SequenceShardedEmbedding(RowParallelEmbedding):
    """A :class:`RowParallelEmbedding` whose output is this rank's positions only.

    The lookup is the same (zeros for ids outside the rank's rows); the ranks' partial
    results are then reduce-scattered along the sequence instead of all-reduced, as
    Megatron-SP's ``reduce_scatter_to_sequence_parallel_region``. Backward all-gathers the
    positions' gradients (DTensor's redistribution from ``Partial`` to ``Shard(1)``).
    """

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        mesh = self.weight.device_mesh
        seq, tp = ids.shape[SEQUENCE_DIM], mesh.size()
        if seq % tp:
            raise ConfigError(
                f"sequence parallel splits each sequence over the tp={tp} ranks: a sequence of "
                f"{seq} tokens does not split into {tp} equal parts; make seq_len a multiple "
                f"of {tp}"
            )
        rows = self.weight.to_local()
        local = ids - mesh.get_local_rank() * rows.shape[0]
        elsewhere = (local < 0) | (local >= rows.shape[0])
        found = F.embedding(local.masked_fill(elsewhere, 0), rows)
        partial = DTensor.from_local(
            found.masked_fill(elsewhere[..., None], 0.0), mesh, [Partial()], run_check=False
        )
        return partial.redistribute(mesh, [Shard(SEQUENCE_DIM)]).to_local()


def sum_layernorm_grads_over_ranks(model: nn.Module) -> None:
    """Make every sequence-sharded LayerNorm's gradient whole as it is computed.

    Each rank's LayerNorm sees its positions only, so its weight and bias gradients are that
    rank's share of the sum (DTensor leaves them ``Partial``); Megatron-SP all-reduces them
    over the tensor-parallel ranks. FSDP2 does that itself when it reduces gradients; without
    it, a gradient hook on each of these parameters does, before the gradient is accumulated,
    so that clipping and AdamW see the whole gradient. The hooks are registered when the model
    first runs: ``materialize``'s ``to_empty`` swaps the parameters' tensors, and a hook
    registered on the meta tensors would be swapped away with them.
    """
    layernorm_params = [
        param
        for module in model.modules()
        if isinstance(module, nn.LayerNorm) and isinstance(module.weight, DTensor)
        for param in module.parameters()
    ]

    def register_hooks(_model, _args):
        for param in layernorm_params:
            param.register_hook(_without_partial)
        registration.remove()

    registration = model.register_forward_pre_hook(register_hooks)


def _without_partial(grad: DTensor) -> DTensor:
    if not any(p.is_partial() for p in grad.placements):
        return grad
    whole = [Replicate() if p.is_partial() else p for p in grad.placements]
    return grad.redistribute(grad.device_mesh, whole)
