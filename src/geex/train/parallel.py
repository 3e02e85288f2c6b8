"""``parallelize()``: spread a single-device CodeGeeX over the ranks of a run, from outside.

The order is torchtitan's: tensor parallel, then activation checkpointing, then
``torch.compile``, then data parallel (FSDP2 or DDP); a tensor-parallel block that is both
checkpointed and compiled is compiled first (see :func:`parallelize`). The model code knows none of this; its
parameter names survive every step, so checkpoints load at any layout.

Tensor parallel follows Megatron (as CodeGeeX ran it, 8-way): in every block, including the
top query layer, query/key/value and the MLP's first matmul are split by output columns and
the attention and MLP output projections by input rows, so each block costs two all-reduces.

The vocabulary is split too, as CodeGeeX's ``VocabParallelEmbedding`` did: the word
embeddings (tied to the output head) and the position tables by rows, so each rank computes
the logits and the loss of its vocabulary slice only (:mod:`geex.train.vocab_parallel`). With
``sequence_parallel`` the LayerNorm and residual regions between the matmuls are split by
sequence over the same ranks (:mod:`geex.train.sequence_parallel`). FSDP then shards every
parameter over the data-parallel ranks. Activation checkpointing wraps every block, every
N-th, or keeps the expensive ops' outputs (:mod:`geex.train.activation_checkpointing`).

Mixed precision under FSDP2 is torchtitan's: the sharded parameters (what AdamW updates) stay
fp32, each all-gather casts them to the compute dtype first, so it carries half the bytes of
an fp32 one, and gradients are reduce-scattered in fp32. The model then runs in that dtype
(no autocast; see :func:`geex.train.precision.autocast`) apart from what it computes in fp32
itself: LayerNorm, the attention softmax and the loss.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard
from torch.distributed.tensor import DTensor, distribute_tensor
from torch.distributed.tensor.parallel import (
    ColwiseParallel,
    RowwiseParallel,
    parallelize_module,
)
from torch.nn.parallel import DistributedDataParallel

from geex.errors import ConfigError
from geex.model.checkpoint import clean_name
from geex.model.codegeex import CodeGeeX
from geex.train import sequence_parallel
from geex.train.activation_checkpointing import checkpoint_block, checkpointed
from geex.train.config import ParallelConfig
from geex.train.distributed import World
from geex.train.precision import AUTOCAST_DTYPES
from geex.train.sharded_start import as_shard, local_initial_value, shard_indices
from geex.train.vocab_parallel import check_divides, split_vocabulary

BLOCK_TP_PLAN = {
    "attention.query": ColwiseParallel(),
    "attention.key": ColwiseParallel(),
    "attention.value": ColwiseParallel(),
    "attention.dense": RowwiseParallel(),
    "mlp.dense_h_to_4h": ColwiseParallel(),
    "mlp.dense_4h_to_h": RowwiseParallel(),
}


def blocks(model: CodeGeeX) -> list[tuple[nn.Module, str, nn.Module]]:
    """(parent, attribute, block) for every block, the top query layer last."""
    return [(model.layers, name, block) for name, block in model.layers.items()] + [
        (model, "top_query_layer", model.top_query_layer)
    ]


def parallelize(
    model: CodeGeeX, world: World, config: ParallelConfig, precision: str = "fp32"
) -> nn.Module:
    """Apply tensor parallel, activation checkpointing, compile and FSDP2 in place; return the
    module to train (``model`` itself, or its DDP wrapper). Call it on the meta device, then
    :func:`materialize`, then wrap with DDP via :func:`wrap_data_parallel`. ``precision`` is
    the run's resolved one: under FSDP2, bf16 and fp16 set its :func:`mixed_precision_policy`."""
    _check(model, world, config)
    if config.tp > 1:
        tp_mesh = world.mesh["tp"]
        plan = sequence_parallel.block_plan() if config.sequence_parallel else BLOCK_TP_PLAN
        for _, _, block in blocks(model):
            parallelize_module(block, tp_mesh, plan)
        if config.sequence_parallel:
            sequence_parallel.shard_sequence_outside_blocks(model, tp_mesh)
        split_vocabulary(model, tp_mesh)
        if config.sequence_parallel:
            sequence_parallel.shard_embeddings_by_sequence(model)
            if not config.fsdp:  # FSDP2 sums them when it reduces the gradients
                sequence_parallel.sum_layernorm_grads_over_ranks(model)
    for position, (parent, name, block) in enumerate(blocks(model), start=1):
        recompute = checkpointed(config.activation_checkpointing, position)
        if config.compile and recompute and config.tp > 1:
            # torch 2.13 cannot compile a checkpointed block of DTensor weights (AOTAutograd
            # refuses the DeviceMesh it would save: "expected all tensors_saved_with_vc_check
            # to be Tensors"); compiled first and checkpointed around, the block computes the
            # same and recomputes through the compiled graph.
            block.compile()
            block = checkpoint_block(block, config.activation_checkpointing)
        else:
            if recompute:
                block = checkpoint_block(block, config.activation_checkpointing)
            if config.compile:
                block.compile()
        setattr(parent, name, block)
    if config.fsdp:
        dp_mesh = world.mesh["dp"] if world.mesh is not None else None
        policy = mixed_precision_policy(precision)
        for _, _, block in blocks(model):
            fully_shard(block, mesh=dp_mesh, mp_policy=policy)
        # The root holds the embeddings, the final LayerNorm and the tied head: the same casts.
        fully_shard(model, mesh=dp_mesh, mp_policy=policy)
    return model


def mixed_precision_policy(precision: str) -> MixedPrecisionPolicy:
    """FSDP2's casts for a run in ``precision`` (fp32, bf16 or fp16).

    bf16 and fp16 gather and compute in that dtype and reduce gradients in fp32, torchtitan's
    defaults: a sum of low-precision gradients over many ranks loses their small parts, and
    the fp32 shards they land in are the master weights. fp32 casts nothing.
    """
    if precision == "fp32":
        return MixedPrecisionPolicy()
    if precision not in AUTOCAST_DTYPES:
        raise ValueError(
            f"FSDP2 mixed precision is for fp32, bf16 or fp16, not {precision!r} (resolve 'auto' "
            "with geex.train.precision.resolve_precision first)"
        )
    return MixedPrecisionPolicy(param_dtype=AUTOCAST_DTYPES[precision], reduce_dtype=torch.float32)


def materialize(model: CodeGeeX, device: torch.device, seed: int) -> None:
    """Allocate the (possibly sharded) parameters on ``device`` and give each its initial value.

    Each rank draws a parameter's initial value a block of rows at a time and keeps the
    elements of its own shard (:mod:`geex.train.sharded_start`), so the result equals the
    single-device initialisation whatever the layout, and a rank holds no more than its
    shards, the shard being drawn and a few 4 MiB blocks, even for a 13B model's embeddings.
    """
    model.to_empty(device=device)
    with torch.no_grad():
        for name, param in model.named_parameters():
            name = clean_name(name)
            if not isinstance(param, DTensor):
                for first, rows in model.initial_row_blocks(name, seed):
                    param[first : first + len(rows)] = rows.to(device)
                continue
            indices = shard_indices(param)
            if indices is None:  # a placement that is not a split into rows and columns
                full = model.initial_value(name, seed).to(device)
                param.copy_(
                    distribute_tensor(full, param.device_mesh, param.placements, src_data_rank=None)
                )
                continue
            local = local_initial_value(model, name, seed, indices)
            param.copy_(as_shard(local.to(device), param))


def wrap_data_parallel(model: nn.Module, world: World, config: ParallelConfig) -> nn.Module:
    """Plain data parallel (DDP) when there are several data-parallel ranks and no FSDP."""
    if world.dp == 1 or config.fsdp:
        return model
    device_ids = [world.device.index] if world.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids)


def _check(model: CodeGeeX, world: World, config: ParallelConfig) -> None:
    if config.sequence_parallel and config.tp < 2:
        raise ConfigError(
            f"sequence parallel splits the sequence over tensor-parallel ranks: it needs "
            f"parallel.tp > 1 (--tp), got tp={config.tp}"
        )
    if config.sequence_parallel and model.config.dropout:
        # Megatron draws them from a stream per tensor-parallel rank; Geex has none yet.
        raise ConfigError(
            f"sequence parallel with model.dropout={model.config.dropout} would draw the same "
            "dropout masks for every rank's positions: train with dropout 0, or without "
            "sequence parallel"
        )
    if config.tp > 1:
        if model.config.n_head % config.tp:
            raise ConfigError(
                f"parallel.tp={config.tp} must divide the number of heads ({model.config.n_head})"
            )
        if model.config.d_ffn % config.tp:
            raise ConfigError(f"parallel.tp={config.tp} must divide d_ffn ({model.config.d_ffn})")
        check_divides(model.config, config.tp)
        if world.dp > 1 and not config.fsdp:
            raise ConfigError(
                "tensor parallel with several data-parallel ranks needs FSDP (parallel.fsdp / "
                "--fsdp): DDP does not replicate DTensor parameters"
            )
