"""A plain PyTorch GPT, nanoGPT style: the baseline Geex's training step is measured against.

What a PyTorch user writes without thinking about speed: pre-LN blocks with one fused
query/key/value projection (``c_attn``), ``F.scaled_dot_product_attention(is_causal=True)``,
GELU, a head tied to the word embeddings and ``F.cross_entropy`` on fp32 logits, trained by
nanoGPT's AdamW (:func:`plain_adamw`). Built from a
Geex config with ``n_layer + 1`` blocks (Geex's top query layer is one more attending block)
and the same width, heads, positions and padded vocabulary. Not Geex: it lives in benchmarks.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from geex.model import ModelConfig


def plain_adamw(model: nn.Module, optim) -> torch.optim.AdamW:
    """nanoGPT's optimiser: the fused AdamW with weight decay on every matrix, none elsewhere.

    The same kernel and hyperparameters as Geex's ``build_optimizer`` (``optim`` is its
    ``OptimConfig``), and the same groups as Geex's defaults: matmul weights and embeddings
    decay, biases and LayerNorm parameters do not (Geex can also spare its embeddings).
    """
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": optim.weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=optim.lr, betas=optim.betas, eps=optim.eps, fused=True)


class CausalSelfAttention(nn.Module):
    def __init__(self, d_model: int, n_head: int):
        super().__init__()
        self.n_head = n_head
        self.c_attn = nn.Linear(d_model, 3 * d_model)
        self.c_proj = nn.Linear(d_model, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, seq, d = x.shape
        q, k, v = self.c_attn(x).split(d, dim=2)
        q, k, v = (t.view(batch, seq, self.n_head, -1).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.c_proj(y.transpose(1, 2).contiguous().view(batch, seq, d))


class Block(nn.Module):
    def __init__(self, d_model: int, n_head: int, d_ffn: int, eps: float):
        super().__init__()
        self.ln_1 = nn.LayerNorm(d_model, eps=eps)
        self.attn = CausalSelfAttention(d_model, n_head)
        self.ln_2 = nn.LayerNorm(d_model, eps=eps)
        self.c_fc = nn.Linear(d_model, d_ffn)
        self.c_proj = nn.Linear(d_ffn, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.c_proj(F.gelu(self.c_fc(self.ln_2(x))))


class PlainGPT(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        d = config.d_model
        self.wte = nn.Embedding(config.padded_vocab_size, d)
        self.wpe = nn.Embedding(config.max_seq_len, d)
        self.h = nn.ModuleList(
            Block(d, config.n_head, config.d_ffn, config.layernorm_eps)
            for _ in range(config.n_attention_layers)
        )
        self.ln_f = nn.LayerNorm(d, eps=config.layernorm_eps)
        self.lm_head = nn.Linear(d, config.padded_vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight  # tied
        for name, param in self.named_parameters():
            if name.endswith("bias"):
                nn.init.zeros_(param)
            elif param.dim() > 1:
                std = config.init_std
                if name.endswith("c_proj.weight"):
                    std /= (2 * config.n_attention_layers) ** 0.5
                nn.init.normal_(param, std=std)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The mean cross-entropy of the next tokens ``targets``, on fp32 logits."""
        positions = torch.arange(idx.shape[1], device=idx.device)
        x = self.wte(idx) + self.wpe(positions)
        for block in self.h:
            x = block(x)
        logits = self.lm_head(self.ln_f(x))
        return F.cross_entropy(logits.float().flatten(0, 1), targets.flatten())
