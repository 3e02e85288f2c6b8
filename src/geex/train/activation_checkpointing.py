"""Which blocks recompute their activations in backward, and how much of them (torchtitan's modes).

``ParallelConfig.activation_checkpointing`` names one of:

* ``none``: every block keeps what autograd saves; the fastest, the most memory.
* ``full``: every block keeps its input only and reruns its forward pass in backward: about a
  third more compute for the blocks, their activations down to one input each.
* ``selective-N``: every N-th block (the N-th, 2N-th, ..., counting the top query layer as the
  last) is checkpointed whole, the others keep everything: memory and recomputation between
  ``none`` and ``full``.
* ``selective-op``: every block is checkpointed, but keeps the outputs of the expensive ops
  (every other matmul, the attention kernel, the reduce-scatter that ends a sequence-parallel
  region, the max), so its backward reruns only the cheap element-wise ops (LayerNorm, FastGELU, the
  additions) and the matmuls in between. Korthikanti et al. (2022) and torchtitan choose what
  to keep the same way: outputs that cost many FLOPs per byte saved.
"""

from __future__ import annotations

from collections import defaultdict
from functools import partial

import torch
from torch import nn
from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import checkpoint_wrapper
from torch.utils.checkpoint import CheckpointPolicy, create_selective_checkpoint_contexts

from geex.train.config import checkpointed_every, checkpointing_mode

MATMULS = (torch.ops.aten.mm.default, torch.ops.aten.addmm.default)
# Outputs selective-op keeps whatever their count: the attention kernels (CPU's, flash,
# memory-efficient, cuDNN), the reduce-scatter that closes a sequence-parallel region (split by
# sequence, so small; a recomputation would repeat it on the wire), and max (cheap to keep, a
# reduction to redo): torchtitan's list. Plain tensor parallel's all-reduce is recomputed: its
# output is the whole residual stream, as large as the block's input.
ALWAYS_SAVED = {
    torch.ops.aten._scaled_dot_product_flash_attention.default,
    torch.ops.aten._scaled_dot_product_efficient_attention.default,
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu.default,
    torch.ops.aten._scaled_dot_product_cudnn_attention.default,
    torch.ops._c10d_functional.reduce_scatter_tensor.default,
    torch.ops.aten.max.default,
}


def checkpointed(mode: str, position: int) -> bool:
    """Whether the block at ``position`` (1 for the first, the top query layer last) is
    wrapped under ``mode``."""
    mode = checkpointing_mode(mode)
    if mode == "none":
        return False
    every = checkpointed_every(mode)
    return every is None or position % every == 0


def checkpoint_block(block: nn.Module, mode: str) -> nn.Module:
    """``block`` wrapped to recompute in backward: whole, or keeping the expensive outputs
    under ``selective-op``. Non-reentrant, as FSDP2 and compile need."""
    if checkpointing_mode(mode) != "selective-op":
        return checkpoint_wrapper(block)
    # The RNG state is kept (torchtitan drops it, its models having no dropout): the residual
    # dropouts are recomputed and must draw the masks of the forward pass again.
    return checkpoint_wrapper(block, context_fn=_keep_expensive_outputs)


def _keep_expensive_outputs():
    """Fresh matmul counters for one forward pass and its recomputation: the same matmuls
    must be kept in both, so each counts its own."""
    counts: defaultdict[str, int] = defaultdict(int)
    return create_selective_checkpoint_contexts(partial(_policy, counts))


def _policy(counts, ctx, func, *args, **kwargs) -> CheckpointPolicy:
    if func in MATMULS:
        phase = "recompute" if ctx.is_recompute else "forward"
        counts[phase] += 1
        # Keep the 1st, 3rd, 5th...: in a block the query, value and MLP up-projections.
        if counts[phase] % 2:
            return CheckpointPolicy.MUST_SAVE
        return CheckpointPolicy.PREFER_RECOMPUTE
    if func in ALWAYS_SAVED:
        return CheckpointPolicy.MUST_SAVE
    return CheckpointPolicy.PREFER_RECOMPUTE
