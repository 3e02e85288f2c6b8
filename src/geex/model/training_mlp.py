"""CodeGeeX's MLP for training, with FastGELU's constants inside the matmuls, forward and back.

``dense_4h_to_h(fast_gelu(dense_h_to_4h(x)))`` with ``fast_gelu(x) = x * sigmoid(1.702 x)`` is
``silu(1.702 h) / 1.702``. Matmuls scale their product for free (BLAS's ``alpha``, and ``beta``
for the bias), so the first matmul computes ``1.702 h``, the second divides by 1.702, and what
is left between them is one ``silu`` forward and one fused ``silu_backward``. Autograd would
scale each gradient of a scaled matmul in a pass of its own (as large as the weights for the
weight gradients); this backward folds the constants into the gradient matmuls too. Equal to
the plain form up to float rounding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

GELU_SCALE = 1.702  # FastGELU's x * sigmoid(1.702 x)


def fast_gelu_mlp(rows, up_weight, up_bias, down_weight, down_bias) -> torch.Tensor:
    """The MLP of ``rows`` ``(tokens, width)``; under autocast, in its dtype as ``F.linear``."""
    tensors = (rows, up_weight, up_bias, down_weight, down_bias)
    device = rows.device.type
    if not torch.is_autocast_enabled(device):
        return _FastGeluMLP.apply(*tensors)
    dtype = torch.get_autocast_dtype(device)
    with torch.autocast(device, enabled=False):  # backward runs outside autocast anyway
        return _FastGeluMLP.apply(*(t.to(dtype) for t in tensors))


def _scaled_mm(a: torch.Tensor, b: torch.Tensor, scale: float) -> torch.Tensor:
    """``scale * (a @ b)`` in the matmul itself (``beta=0``: the input is ignored)."""
    return torch.addmm(a.new_zeros(()), a, b, beta=0, alpha=scale)


class _FastGeluMLP(torch.autograd.Function):
    @staticmethod
    def forward(ctx, rows, up_weight, up_bias, down_weight, down_bias):
        h = torch.addmm(up_bias, rows, up_weight.t(), beta=GELU_SCALE, alpha=GELU_SCALE)
        activations = F.silu(h)
        ctx.save_for_backward(rows, up_weight, down_weight, h, activations)
        return torch.addmm(down_bias, activations, down_weight.t(), alpha=1 / GELU_SCALE)

    @staticmethod
    def backward(ctx, grad_out):
        rows, up_weight, down_weight, h, activations = ctx.saved_tensors
        need_rows, need_up_w, need_up_b, need_down_w, need_down_b = ctx.needs_input_grad
        grad_down_weight = (
            _scaled_mm(grad_out.t(), activations, 1 / GELU_SCALE) if need_down_w else None
        )
        grad_down_bias = grad_out.sum(0) if need_down_b else None
        grad_activations = _scaled_mm(grad_out, down_weight, 1 / GELU_SCALE)
        grad_h = torch.ops.aten.silu_backward(grad_activations, h)
        grad_rows = _scaled_mm(grad_h, up_weight, GELU_SCALE) if need_rows else None
        grad_up_weight = _scaled_mm(grad_h.t(), rows, GELU_SCALE) if need_up_w else None
        grad_up_bias = grad_h.sum(0).mul_(GELU_SCALE) if need_up_b else None
        return grad_rows, grad_up_weight, grad_up_bias, grad_down_weight, grad_down_bias
