"""The language-modelling loss, always in fp32.

Half-precision log-softmax over ~50k logits loses the small probabilities that carry the
gradient; CodeGeeX computed the loss in fp32 and so do we, whatever the compute dtype.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100


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
