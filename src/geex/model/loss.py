"""The language-modelling loss, always in fp32.

Half-precision log-softmax over ~50k logits loses the small probabilities that carry the
gradient; CodeGeeX computed the loss in fp32 and so do we, whatever the compute dtype.

Training computes it with :func:`linear_cross_entropy`, which takes the last hidden states and
the tied output head instead of logits: the same loss and gradients, chunk by chunk, without
ever holding the ``(tokens, vocabulary)`` logits in memory.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100

# The logits one chunk holds at least: 2**20 fp32 logits are 4 MiB, which stay in a CPU's cache
# between the passes over them; fewer rows make the head's matmuls inefficient. A chunk also
# has at least as many rows as the hidden width: every chunk adds its share to the head's whole
# (vocabulary, width) gradient, which must not cost more than the chunk's own logits.
CHUNK_LOGITS = 2**20


def lm_loss(
    logits: torch.Tensor, targets: torch.Tensor, *, reduction: str = "mean"
) -> torch.Tensor:
    """Cross-entropy of ``logits`` ``(..., vocab)`` against ``targets`` ``(...)`` in fp32.

    Targets equal to ``IGNORE_INDEX`` (-100) do not count (padding, or the first token after a
    document boundary when attention is reset there).
    """
    return F.cross_entropy(
        logits.float().flatten(0, -2),
        targets.flatten(),
        ignore_index=IGNORE_INDEX,
        reduction=reduction,
    )


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
    if chunk_rows is None:
        chunk_rows = max(weight.shape[1], CHUNK_LOGITS // weight.shape[0])
    if torch.is_grad_enabled() and (hidden.requires_grad or weight.requires_grad):
        return _LinearCrossEntropy.apply(hidden, weight, targets, reduction, chunk_rows)
    with torch.no_grad():
        head = _HeadChunks(hidden, weight, targets, reduction)
        loss = sum(head.chunk_loss(start, chunk_rows)[0] for start in head.starts(chunk_rows))
        return loss * head.scale


class _HeadChunks:
    """The rows, targets and head of one fused loss, in the dtype its matmuls run in."""

    def __init__(self, hidden, weight, targets, reduction):
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
        known = self.targets[start:stop].clamp(min=0)[:, None]  # ignored rows: any index
        with torch.autocast(self.device, enabled=False):
            logits = (chunk @ self.head.t()).float()
        target_logits = logits.gather(1, known)
        # The log-sum-exp and the softmax from one exp pass, in place.
        peak = logits.amax(dim=-1, keepdim=True)
        exps = logits.sub_(peak).exp_()
        total = exps.sum(dim=-1, keepdim=True)
        loss = ((total.log() + peak - target_logits).squeeze(1) * counted).sum()
        if not with_grad:
            return loss, chunk, None
        probs = exps.mul_(counted[:, None] / total)
        probs.scatter_add_(1, known, -counted[:, None].to(probs.dtype))
        return loss, chunk, probs.to(self.compute_dtype)


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, targets, reduction, chunk_rows):
        head = _HeadChunks(hidden, weight, targets, reduction)
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
        return grad_hidden, grad_weight, None, None, None


def _add_head_grad(grad_weight, grad_logits, chunk):
    """Add one chunk's ``grad_logits.t() @ chunk`` (in the compute dtype) to the fp32 sum."""
    if grad_weight is None:
        return (grad_logits.t() @ chunk).float()
    if chunk.dtype == torch.float32:
        return grad_weight.addmm_(grad_logits.t(), chunk)
    return grad_weight.add_(grad_logits.t() @ chunk)
