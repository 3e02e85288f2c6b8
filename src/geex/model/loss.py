"""The language-modelling loss, always in fp32.

Half-precision log-softmax over ~50k logits loses the small probabilities that carry the
gradient; CodeGeeX computed the loss in fp32 and so do we, whatever the compute dtype.

Training computes it with :func:`linear_cross_entropy`, which takes the last hidden states and
the tied output head instead of logits: the same loss and gradients, chunk by chunk, without
ever holding the ``(tokens, vocabulary)`` logits in memory.

Under tensor parallel the vocabulary is split over the ranks (``geex.train.parallel``): the
head's weight, and so the logits, arrive as DTensors sharded by vocabulary rows. Each rank then
works on its own slice and three all-reduces over the tensor-parallel group combine the slices,
as Megatron's vocab-parallel cross-entropy does: the maximum logit of each row, the sum of its
exponentials, and the target's logit (held by one rank). No rank ever holds the logits of the
whole vocabulary.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.distributed.tensor import DTensor, Shard

IGNORE_INDEX = -100

# The logits one chunk holds at least: 2**20 fp32 logits are 4 MiB, which stay in a CPU's cache
# between the passes over them; fewer rows make the head's matmuls inefficient. A chunk also
# has at least as many rows as the hidden width: every chunk adds its share to the head's whole
# (vocabulary, width) gradient, which must not cost more than the chunk's own logits.
CHUNK_LOGITS = 2**20


def lm_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    *,
    reduction: str = "mean",
    vocab: int | None = None,
) -> torch.Tensor:
    """Cross-entropy of ``logits`` ``(..., vocab)`` against ``targets`` ``(...)`` in fp32.

    Targets equal to ``IGNORE_INDEX`` (-100) do not count (padding, or the first token after a
    document boundary when attention is reset there). ``vocab`` keeps the softmax to the first
    ``vocab`` ids (a tokenizer's, leaving out the rows the vocabulary is padded with).

    Logits sharded by vocabulary (a DTensor, as a tensor-parallel model returns them) are
    reduced over their ranks without being gathered; the result is the same on every rank.
    """
    if isinstance(logits, DTensor):
        return _vocab_parallel_lm_loss(logits, targets, reduction, vocab)
    if vocab is not None:
        logits = logits[..., :vocab]
    return F.cross_entropy(
        logits.float().flatten(0, -2),
        targets.flatten(),
        ignore_index=IGNORE_INDEX,
        reduction=reduction,
    )


def _vocab_parallel_lm_loss(logits, targets, reduction, vocab):
    if torch.is_grad_enabled() and logits.requires_grad:
        raise ValueError(
            "lm_loss has no backward for vocabulary-sharded logits: training computes its loss "
            "fused with the head (model(inputs, targets=...), linear_cross_entropy)"
        )
    group, vocab_start = _vocab_shard(logits)
    # A copy: the local logits are overwritten below, and the caller may still need them.
    local = logits.to_local().to(torch.float32, copy=True).flatten(0, -2)
    if vocab is not None:
        # The padding rows' logits leave the softmax: exp(-inf) adds nothing to its sum.
        ids = torch.arange(vocab_start, vocab_start + local.shape[1], device=local.device)
        local = local.masked_fill(ids >= vocab, float("-inf"))
    targets = targets.flatten()
    counted = targets != IGNORE_INDEX
    peak, total, target_logits = _softmax_terms(local, targets, vocab_start, group)
    losses = (total.log() + peak - target_logits) * counted
    if reduction == "none":
        return losses
    if reduction == "sum":
        return losses.sum()
    if reduction == "mean":
        return losses.sum() / counted.sum()
    raise ValueError(f"lm_loss reduces by 'mean', 'sum' or 'none', not {reduction!r}")


def _vocab_shard(tensor: DTensor, dim: int = -1):
    """The process group a vocabulary-sharded DTensor spans and the first id of this rank's
    slice. The slices must be equal (the padded vocabulary divides by the tensor-parallel
    degree: ``geex.train.parallel`` checks it)."""
    dim = dim % tensor.ndim
    if tensor.device_mesh.ndim != 1 or tensor.placements != (Shard(dim),):
        raise ValueError(
            f"vocabulary-parallel loss needs a tensor sharded on its vocabulary dimension {dim} "
            f"over one mesh dimension, got placements {tensor.placements}"
        )
    mesh = tensor.device_mesh
    width = tensor.shape[dim] // mesh.size()
    if width * mesh.size() != tensor.shape[dim]:
        raise ValueError(
            f"a vocabulary of {tensor.shape[dim]} does not split evenly over {mesh.size()} ranks"
        )
    return mesh.get_group(), mesh.get_local_rank() * width


def _softmax_terms(logits, targets, vocab_start, group):
    """Per row of this rank's fp32 ``logits`` (its vocabulary slice): the whole vocabulary's
    maximum logit, sum of ``exp(logit - maximum)`` and target logit, in two all-reduces (one
    without ``group``). Rows whose target is ``IGNORE_INDEX`` get the logit of id 0.

    ``logits`` is overwritten with ``exp(logit - maximum)``: the softmax's numerators, which
    the fused loss reuses for its gradient.
    """
    width = logits.shape[1]
    local = targets - vocab_start
    mine = (local >= 0) & (local < width)
    target_logits = logits.gather(1, local.clamp(0, width - 1)[:, None]).squeeze(1)
    peak = logits.amax(dim=-1)
    if group is not None:
        target_logits = torch.where(mine, target_logits, 0.0)
        dist.all_reduce(peak, op=dist.ReduceOp.MAX, group=group)
    exps = logits.sub_(peak[:, None]).exp_()
    total = exps.sum(dim=-1)
    if group is not None:
        sums = torch.stack([total, target_logits])
        dist.all_reduce(sums, group=group)
        total, target_logits = sums
    return peak, total, target_logits


def linear_cross_entropy(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    *,
    reduction: str = "mean",
    chunk_rows: int | None = None,
) -> torch.Tensor:
    """``lm_loss(F.linear(hidden, weight), targets)``, without materialising the logits.

    ``hidden`` ``(..., d)``, ``weight`` ``(vocab, d)``, ``targets`` ``(...)``. The idea of
    Liger-Kernel's fused linear cross-entropy: a chunk of rows at a time, the forward pass
    computes the logits, their fp32 log-sum-exp, the loss and, while the chunk is still in
    cache, the gradient of the loss with respect to the chunk's logits and from it those with
    respect to ``hidden`` and ``weight``. Backward only scales them by the incoming gradient.
    Full fp32 logits (and the same again for their gradient) would be read and written several
    times each: 64 MiB per pass for a tiny model's 2,048 x 8,192, most of the loss's time on a
    CPU. The matmuls run in the autocast dtype if autocast is on, as ``F.linear`` would.

    The gradients are computed unreduced (``softmax - one_hot``, not divided by the number of
    targets) and scaled in fp32 afterwards: fp16 would flush ``softmax / tokens`` to zero
    before a loss scaler could lift it. Memory: the head's fp32 ``(vocab, d)`` gradient and the
    gradient of ``hidden`` are held from the forward pass until backward. Without autograd
    (``torch.no_grad()``, or nothing requiring a gradient) only the loss is computed.
    """
    if reduction not in ("mean", "sum"):
        raise ValueError(f"linear_cross_entropy reduces by 'mean' or 'sum', not {reduction!r}")
    if hidden.shape[:-1] != targets.shape:
        raise ValueError(
            f"hidden states {tuple(hidden.shape)} and targets {tuple(targets.shape)} differ in "
            "their leading dimensions"
        )
    group, vocab_start = None, 0
    if isinstance(weight, DTensor):
        # Tensor parallel: this rank's vocabulary rows, and the hidden states every rank holds.
        group, vocab_start = _vocab_shard(weight, dim=0)
        weight = weight.to_local()
        if isinstance(hidden, DTensor):
            hidden = hidden.to_local()
    if chunk_rows is None:
        chunk_rows = max(weight.shape[1], CHUNK_LOGITS // weight.shape[0])
    shard = (group, vocab_start)
    if torch.is_grad_enabled() and (hidden.requires_grad or weight.requires_grad):
        return _LinearCrossEntropy.apply(hidden, weight, targets, reduction, chunk_rows, shard)
    with torch.no_grad():
        head = _HeadChunks(hidden, weight, targets, reduction, shard)
        loss = sum(head.chunk_loss(start, chunk_rows)[0] for start in head.starts(chunk_rows))
        return loss * head.scale


class _HeadChunks:
    """The rows, targets and head of one fused loss, in the dtype its matmuls run in."""

    def __init__(self, hidden, weight, targets, reduction, shard):
        self.group, self.vocab_start = shard  # (None, 0) unless the vocabulary is split
        device = hidden.device.type
        self.device = device
        self.compute_dtype = (
            torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else hidden.dtype
        )
        self.rows = hidden.reshape(-1, hidden.shape[-1])
        self.targets = targets.reshape(-1)
        self.counted = self.targets != IGNORE_INDEX
        # Mean over the counted targets, as F.cross_entropy's ignore_index does (NaN if none).
        self.scale = (
            1.0 / self.counted.sum().float()
            if reduction == "mean"
            else torch.ones((), device=hidden.device)
        )
        self.head = weight.to(self.compute_dtype)

    def starts(self, chunk_rows):
        return range(0, self.rows.shape[0], chunk_rows)

    def chunk_loss(self, start, chunk_rows, *, with_grad=False):
        """The summed loss of one chunk's rows and, if asked, its logits' unscaled gradient.

        Returns ``(loss, chunk, grad_logits)``: ``chunk`` the rows in the compute dtype,
        ``grad_logits`` = ``softmax - one_hot(target)``, zero on ignored rows, in the compute
        dtype (``None`` unless ``with_grad``).
        """
        stop = start + chunk_rows
        chunk = self.rows[start:stop].to(self.compute_dtype)
        counted = self.counted[start:stop]
        targets = self.targets[start:stop]
        with torch.autocast(self.device, enabled=False):
            logits = (chunk @ self.head.t()).float()
        # The log-sum-exp and the softmax from one exp pass, in place.
        peak, total, target_logits = _softmax_terms(logits, targets, self.vocab_start, self.group)
        exps = logits
        loss = ((total.log() + peak - target_logits) * counted).sum()
        if not with_grad:
            return loss, chunk, None
        probs = exps.mul_((counted / total)[:, None])
        local = targets - self.vocab_start
        mine = counted & (local >= 0) & (local < probs.shape[1])
        probs.scatter_add_(
            1, local.clamp(0, probs.shape[1] - 1)[:, None], -mine[:, None].to(probs.dtype)
        )
        return loss, chunk, probs.to(self.compute_dtype)


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, targets, reduction, chunk_rows, shard):
        head = _HeadChunks(hidden, weight, targets, reduction, shard)
        need_hidden_grad, need_weight_grad = ctx.needs_input_grad[:2]
        grad_rows = torch.empty_like(head.rows) if need_hidden_grad else None
        grad_weight = None
        loss = torch.zeros((), dtype=torch.float32, device=hidden.device)
        with torch.autocast(head.device, enabled=False):
            for start in head.starts(chunk_rows):
                chunk_loss, chunk, grad_logits = head.chunk_loss(start, chunk_rows, with_grad=True)
                loss += chunk_loss
                if grad_rows is not None:
                    grad_rows[start : start + chunk_rows] = grad_logits @ head.head
                if need_weight_grad:
                    grad_weight = _add_head_grad(grad_weight, grad_logits, chunk)
        if grad_rows is not None and head.group is not None:
            # Each rank's rows hold its vocabulary slice's share of the hidden states' gradient.
            dist.all_reduce(grad_rows, group=head.group)
        ctx.save_for_backward(
            grad_rows.view_as(hidden) if grad_rows is not None else None, grad_weight, head.scale
        )
        ctx.weight_dtype = weight.dtype
        return loss * head.scale

    @staticmethod
    def backward(ctx, grad_loss):
        if getattr(ctx, "used", False):
            raise RuntimeError(
                "linear_cross_entropy's backward runs once (retain_graph is not supported): its "
                "gradients were computed in the forward pass and are scaled in place"
            )
        ctx.used = True
        grad_hidden, grad_weight, scale = ctx.saved_tensors
        # fp32: the mean's 1/tokens times the loss scale, applied once to the unscaled sums.
        factor = grad_loss.float() * scale
        if grad_hidden is not None:
            grad_hidden = grad_hidden.mul_(factor)
        if grad_weight is not None:
            # In place: the head's gradient is as large as the weights, and nothing else holds it.
            grad_weight = grad_weight.mul_(factor).to(ctx.weight_dtype)
        return grad_hidden, grad_weight, None, None, None, None


def _add_head_grad(grad_weight, grad_logits, chunk):
    """Add one chunk's ``grad_logits.t() @ chunk`` (in the compute dtype) to the fp32 sum."""
    if grad_weight is None:
        return (grad_logits.t() @ chunk).float()
    if chunk.dtype == torch.float32:
        return grad_weight.addmm_(grad_logits.t(), chunk)
    return grad_weight.add_(grad_logits.t() @ chunk)
