"""The CodeGeeX decoder, single-device and readable top to bottom.

CodeGeeX (Zeng et al., 2023) is a GPT decoder with a few particulars, all reproduced here:

* learned absolute position embeddings added to the word embeddings;
* pre-LayerNorm blocks (eps 1e-5) with separate query, key, value and output projections, all
  with biases, and an MLP of width 4h with FastGELU;
* a final LayerNorm after the last block, then the **top query layer**: one more block whose
  attention queries come from a second learned position table, ``top_query_embeddings``, while
  its keys and values come from the normalised hidden states. Nothing normalises its output;
* logits from the word-embedding matrix (tied), over a vocabulary padded for tensor parallelism.

Precision: LayerNorm and the attention softmax run in fp32 whatever the compute dtype, as in
CodeGeeX's fp16 recipe (the loss, too: see :mod:`geex.model.loss`). Parallelism, activation
checkpointing and compilation are applied from outside (``geex.train.parallel``); the layers
sit in an ``nn.ModuleDict`` keyed "0".."L-1" so parameter names survive sharding.

Decoding on a CPU in fp32 can run its matmuls from oneDNN-packed copies of the weights
(:meth:`CodeGeeX.pack_for_cpu_decoding`, :mod:`geex.model.packed`); the parameters, their names
and the training path stay as they are.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from geex.model.config import ModelConfig
from geex.model.loss import linear_cross_entropy
from geex.model.packed import PackedLinear, pack_linears, packed_path, packing_available
from geex.model.training_mlp import GELU_SCALE, fast_gelu_mlp

# The rows per matmul CPU decoding packs its weights for. Measured on a 2-core AMD EPYC (one
# thread, decode step with 32 cached positions): a hint of 64 ran tiny's step 1.25x (batch 1)
# and 1.7x (batch 8) faster than MKL, small's 1.85x at batch 8 and alike at batch 1 (bound by
# reading the weights); smaller hints were slower for tiny and no faster for small.
DECODE_BATCH_HINT = 64

# Values drawn at a time when initialising (4 MiB of fp32): a few such blocks are what a rank
# holds beyond its shards while it initialises them.
INIT_BLOCK_VALUES = 2**20


def fast_gelu(x: torch.Tensor) -> torch.Tensor:
    """CodeGeeX's FastGELU, ``x * sigmoid(1.702 x)``.

    ``torch.sigmoid`` saturates instead of overflowing, so this is finite for every finite input
    in fp16 too (the naive ``x / (1 + exp(-1.702 x))`` overflows below x = -6.5 in fp16).
    """
    return x * torch.sigmoid(GELU_SCALE * x)


def _plain_linear(*linears: nn.Module) -> bool:
    """Whether these layers are bare ``nn.Linear``s with local weights, which training may
    compute by other means: not LoRA-wrapped, not tensor-parallel (DTensor weights, hooks)."""
    return all(
        type(linear) is nn.Linear
        and not linear._forward_pre_hooks
        and not linear._forward_hooks
        and type(linear.weight) is nn.Parameter
        for linear in linears
    )


class LayerNorm(nn.LayerNorm):
    """LayerNorm computed in fp32 and returned in the input's dtype.

    In fp16 the mean of squares overflows and loses precision; CodeGeeX normalised in fp32, and
    CPU autocast would not upcast this for us.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.float32 and self.weight.dtype == torch.float32:
            # Nothing to convert: four fewer operator calls in every decode step.
            return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        y = F.layer_norm(
            x.float(), self.normalized_shape, self.weight.float(), self.bias.float(), self.eps
        )
        return y.to(x.dtype)


class KVCache:
    """Keys and values of every attention layer, preallocated for incremental decoding.

    Index ``i`` in ``range(n_layer)`` is an ordinary block; the last index is the top query
    layer, whose keys and values are cached like any other's. Each layer owns its tensors,
    ``(batch, heads, max_len, head_dim)``, rather than a slice of one stacked tensor: a compiled
    decode step (:mod:`geex.model.generation`) can then write a layer's new position in place,
    where a write into part of one shared input is copied whole, every step.
    """

    def __init__(self, config: ModelConfig, batch_size: int, max_len: int, *, dtype, device):
        shape = (batch_size, config.n_head, max_len, config.head_dim)
        layers = range(config.n_attention_layers)
        self.layer_keys = [torch.zeros(shape, dtype=dtype, device=device) for _ in layers]
        self.layer_values = [torch.zeros(shape, dtype=dtype, device=device) for _ in layers]
        self.length = 0  # positions already stored

    @property
    def max_len(self) -> int:
        return self.layer_keys[0].shape[2]

    @property
    def keys(self) -> torch.Tensor:
        """Every layer's keys, ``(layers, batch, heads, max_len, head_dim)``: a stacked copy."""
        return torch.stack(self.layer_keys)

    @property
    def values(self) -> torch.Tensor:
        """Every layer's values, stacked like :attr:`keys`."""
        return torch.stack(self.layer_values)

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor):
        """Store the new positions' keys and values; return all of them so far."""
        start, end = self.length, self.length + k.shape[2]
        if end > self.max_len:
            raise ValueError(f"KV cache holds {self.max_len} positions; {end} were asked for")
        self.layer_keys[layer][:, :, start:end] = k
        self.layer_values[layer][:, :, start:end] = v
        return self.layer_keys[layer][:, :, :end], self.layer_values[layer][:, :, :end]

    def advance(self, n: int) -> None:
        self.length += n

    def select(self, rows: torch.Tensor) -> None:
        """Keep (or repeat) batch rows, e.g. drop finished samples or fan one prompt out."""
        self.layer_keys = [k.index_select(0, rows) for k in self.layer_keys]
        self.layer_values = [v.index_select(0, rows) for v in self.layer_values]


class SelfAttention(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        d = config.d_model
        self.head_dim = config.head_dim
        self.dropout = config.dropout
        self.query = nn.Linear(d, d)
        self.key = nn.Linear(d, d)
        self.value = nn.Linear(d, d)
        self.dense = nn.Linear(d, d)
        # Packed copies for CPU decoding (see CodeGeeX.pack_for_cpu_decoding): query, key and
        # value as one matmul where they read the same input, else key and value as one.
        self.packed_qkv: PackedLinear | None = None
        self.packed_query: PackedLinear | None = None
        self.packed_kv: PackedLinear | None = None
        self.packed_dense: PackedLinear | None = None

    def pack(self, batch_hint: int, *, queries_from_input: bool) -> None:
        if queries_from_input:
            qkv = (self.query, self.key, self.value)
            self.packed_qkv = pack_linears(self.packed_qkv, qkv, batch_hint)
        else:
            self.packed_query = pack_linears(self.packed_query, (self.query,), batch_hint)
            self.packed_kv = pack_linears(self.packed_kv, (self.key, self.value), batch_hint)
        self.packed_dense = pack_linears(self.packed_dense, (self.dense,), batch_hint)

    def _project(self, x, query_input):
        """Queries, keys and values, from the packed copies where they may be used."""
        if packed_path(x):
            if x is query_input and PackedLinear.usable(self.packed_qkv):
                return self.packed_qkv(x).chunk(3, dim=-1)
            if PackedLinear.usable(self.packed_kv) and PackedLinear.usable(self.packed_query):
                k, v = self.packed_kv(x).chunk(2, dim=-1)
                return self.packed_query(query_input), k, v
        return self.query(query_input), self.key(x), self.value(x)

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        # Heads counted from the width, not the config: under tensor parallel a rank holds
        # n_head / tp of them.
        batch, seq, _ = x.shape
        return x.view(batch, seq, -1, self.head_dim).transpose(1, 2)

    def forward(self, x, query_input, *, kv_cache, layer_index, attn_mask, is_causal):
        q, k, v = (self._split_heads(t) for t in self._project(x, query_input))
        if kv_cache is not None:
            k, v = kv_cache.update(layer_index, k, v)
        # SDPA's kernels (flash, memory-efficient, and the math path since PyTorch 2.5) compute
        # the softmax in fp32 for fp16/bf16 inputs, as CodeGeeX's attention_softmax_in_fp32 did.
        y = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=attn_mask,
            is_causal=is_causal,
            dropout_p=self.dropout if self.training else 0.0,
        )
        batch, _, seq, _ = y.shape
        y = y.transpose(1, 2).reshape(batch, seq, -1)
        if packed_path(y) and PackedLinear.usable(self.packed_dense):
            return self.packed_dense(y)
        return self.dense(y)


class MLP(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.dense_h_to_4h = nn.Linear(config.d_model, config.d_ffn)
        self.dense_4h_to_h = nn.Linear(config.d_ffn, config.d_model)
        self.packed_h_to_4h: PackedLinear | None = None
        self.packed_4h_to_h: PackedLinear | None = None

    def pack(self, batch_hint: int) -> None:
        self.packed_h_to_4h = pack_linears(self.packed_h_to_4h, (self.dense_h_to_4h,), batch_hint)
        self.packed_4h_to_h = pack_linears(self.packed_4h_to_h, (self.dense_4h_to_h,), batch_hint)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        usable = PackedLinear.usable
        if packed_path(x) and usable(self.packed_h_to_4h) and usable(self.packed_4h_to_h):
            return self.packed_4h_to_h(fast_gelu(self.packed_h_to_4h(x)))
        if torch.is_grad_enabled() and _plain_linear(self.dense_h_to_4h, self.dense_4h_to_h):
            return self._train_forward(x)
        return self.dense_4h_to_h(fast_gelu(self.dense_h_to_4h(x)))

    def _train_forward(self, x: torch.Tensor) -> torch.Tensor:
        """The same MLP with FastGELU's constants inside the matmuls (:mod:`.training_mlp`)."""
        up, down = self.dense_h_to_4h, self.dense_4h_to_h
        rows = x.reshape(-1, x.shape[-1])
        y = fast_gelu_mlp(rows, up.weight, up.bias, down.weight, down.bias)
        return y.view(*x.shape[:-1], y.shape[-1])


class Block(nn.Module):
    """A pre-LN transformer block; as the top query layer, its queries come from ``query_input``."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.dropout = config.dropout
        self.input_layernorm = LayerNorm(config.d_model, eps=config.layernorm_eps)
        self.attention = SelfAttention(config)
        self.post_attention_layernorm = LayerNorm(config.d_model, eps=config.layernorm_eps)
        self.mlp = MLP(config)

    def forward(
        self,
        x,
        query_input=None,
        *,
        kv_cache=None,
        layer_index=0,
        attn_mask=None,
        is_causal=False,
    ):
        h = self.input_layernorm(x)
        attn = self.attention(
            h,
            h if query_input is None else query_input,
            kv_cache=kv_cache,
            layer_index=layer_index,
            attn_mask=attn_mask,
            is_causal=is_causal,
        )
        dropout = self.dropout if self.training else 0.0  # no call at all when off
        x = x + (F.dropout(attn, dropout) if dropout else attn)
        mlp = self.mlp(self.post_attention_layernorm(x))
        return x + (F.dropout(mlp, dropout) if dropout else mlp)


# Weights above this are not given a packed second copy (see CodeGeeX.pack_for_cpu_decoding).
MAX_PACKED_BYTES = 4 * 2**30


class CodeGeeX(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        d = config.d_model
        self.word_embeddings = nn.Embedding(config.padded_vocab_size, d)
        self.position_embeddings = nn.Embedding(config.max_seq_len, d)
        self.top_query_embeddings = nn.Embedding(config.max_seq_len, d)
        self.layers = nn.ModuleDict({str(i): Block(config) for i in range(config.n_layer)})
        self.final_layernorm = LayerNorm(d, eps=config.layernorm_eps)
        self.top_query_layer = Block(config)
        self.packed_output: PackedLinear | None = None  # the tied output projection, packed

    def pack_for_cpu_decoding(
        self, batch_hint: int = DECODE_BATCH_HINT, max_bytes: int = MAX_PACKED_BYTES
    ) -> bool:
        """Give every matmul a oneDNN-packed copy of its weights for CPU inference in fp32.

        Forward passes without autograd then run their matmuls from the copies (up to twice as
        fast at a few rows, see :mod:`geex.model.packed`), at the cost of a second copy of the
        weights in memory; a copy whose weights changed since is not used, and calling this
        again repacks it. Returns False, packing nothing, off the CPU, outside fp32 or without
        oneDNN, or when the weights take more than ``max_bytes`` (4 GiB by default, about a
        billion fp32 parameters): a model that large is better decoded in bf16 or INT8 than
        with its memory doubled. ``batch_hint`` is the rows per matmul oneDNN lays the weights
        out for.
        """
        weight_bytes = sum(p.numel() * p.element_size() for p in self.parameters())
        if not packing_available() or weight_bytes > max_bytes:
            return False
        self.packed_output = pack_linears(self.packed_output, (self.word_embeddings,), batch_hint)
        if self.packed_output is None:
            return False
        for layer in self.layers.values():
            layer.attention.pack(batch_hint, queries_from_input=True)
            layer.mlp.pack(batch_hint)
        self.top_query_layer.attention.pack(batch_hint, queries_from_input=False)
        self.top_query_layer.mlp.pack(batch_hint)
        return True

    def forward(
        self,
        input_ids: torch.Tensor,
        position_ids: torch.Tensor | None = None,
        *,
        kv_cache: KVCache | None = None,
        attn_mask: torch.Tensor | None = None,
        last_only: bool = False,
        targets: torch.Tensor | None = None,
        loss_reduction: str = "mean",
    ) -> torch.Tensor:
        """Logits ``(batch, seq, padded_vocab_size)`` for ``input_ids`` ``(batch, seq)``.

        ``position_ids`` default to the positions after what ``kv_cache`` holds. ``attn_mask``
        (boolean, True = may attend, broadcastable to ``(batch, 1, seq, keys)``) replaces the
        causal mask, e.g. for left-padded batches or attention reset at document boundaries.
        ``last_only`` gives the logits of the last position alone, ``(batch, 1, vocab)``: a
        prompt's prefill needs no others, and the vocabulary projection of every position is
        most of a small model's prefill.

        With ``targets`` ``(batch, seq)`` (``IGNORE_INDEX`` where nothing is to be learned),
        training's path: the fp32 loss, reduced by ``loss_reduction`` ("mean" or "sum"), in
        place of the logits, which it never holds in memory (:func:`linear_cross_entropy`).
        """
        seq = input_ids.shape[1]
        past = kv_cache.length if kv_cache is not None else 0
        if position_ids is None:
            position_ids = torch.arange(past, past + seq, device=input_ids.device)[None]
        if attn_mask is None:
            attn_mask, is_causal = _causal_mask(seq, past, input_ids.device)
        else:
            is_causal = False
        attend = dict(kv_cache=kv_cache, attn_mask=attn_mask, is_causal=is_causal)

        x = self.word_embeddings(input_ids) + self.position_embeddings(position_ids)
        for i, layer in enumerate(self.layers.values()):
            x = layer(x, layer_index=i, **attend)
        x = self.final_layernorm(x)
        # Queries from positions alone; expanded to the batch because SDPA's fused kernels
        # (flash, memory-efficient) need queries and keys of the same batch size.
        queries = self.top_query_embeddings(position_ids).expand(x.shape[0], -1, -1)
        x = self.top_query_layer(x, queries, layer_index=self.config.n_layer, **attend)
        if kv_cache is not None:
            kv_cache.advance(seq)
        if targets is not None:
            return linear_cross_entropy(
                x, self.word_embeddings.weight, targets, reduction=loss_reduction
            )
        if last_only:
            x = x[:, -1:]
        if packed_path(x) and PackedLinear.usable(self.packed_output):
            return self.packed_output(x)
        return F.linear(x, self.word_embeddings.weight)

    @torch.no_grad()
    def init_weights(self, seed: int = 0) -> None:
        """Initialise every parameter from its :meth:`initial_row_blocks`, a block of rows at a
        time, so no second full copy of a parameter is ever made. Works after ``to_empty()``."""
        for name, param in self.named_parameters():
            for first, rows in self.initial_row_blocks(name, seed):
                param[first : first + len(rows)] = rows

    def initial_value(self, name: str, seed: int = 0) -> torch.Tensor:
        """The initial fp32 value of parameter ``name``, full size, on the CPU."""
        return torch.cat([rows for _, rows in self.initial_row_blocks(name, seed)])

    def initial_row_blocks(
        self,
        name: str,
        seed: int = 0,
        *,
        stop_row: int | None = None,
        max_values: int | None = None,
    ) -> Iterator[tuple[int, torch.Tensor]]:
        """(first row, rows) of parameter ``name``'s initial fp32 value, top to bottom, about
        ``max_values`` values at a time (:data:`INIT_BLOCK_VALUES` by default), up to
        ``stop_row`` (every row by default).

        Megatron's scheme: N(0, init_std) for weights, output projections scaled down by
        sqrt(2 * n_layer), zero biases, unit LayerNorm gains. Each parameter draws from its own
        generator seeded by (seed, name), so the value depends on nothing else: a sharded model
        initialises exactly like the single-device one, whatever the layout. Drawn in blocks,
        the values are those of one ``torch.randn`` of the whole shape (pinned by a test):
        torch's CPU sampler fills uniforms in order and turns them into normals 16 at a time,
        so consecutive draws of 16k values continue one stream, and a last draw of 16 or more
        redraws its tail as one whole draw would. A rank thus draws a 13B embedding's rows
        without ever holding the whole table.
        """
        shape = self.get_parameter(name).shape
        stop_row = shape[0] if stop_row is None else stop_row
        row_values = math.prod(shape[1:])
        constant = None
        if "layernorm" in name:
            constant = 1.0 if name.endswith("weight") else 0.0
        elif name.endswith("bias"):
            constant = 0.0
        std = self.config.init_std
        if name.endswith(("attention.dense.weight", "mlp.dense_4h_to_h.weight")):
            std /= math.sqrt(2 * self.config.n_layer)
        generator = torch.Generator().manual_seed(seed * 1_000_003 + zlib.crc32(name.encode()))
        max_values = max_values or INIT_BLOCK_VALUES
        for first, count in _row_blocks(shape[0], row_values, stop_row, max_values):
            block_shape = (count, *shape[1:])
            if constant is not None:
                yield first, torch.full(block_shape, constant)
            else:
                yield first, torch.randn(block_shape, generator=generator).mul_(std)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def estimate_flops(self, seq_len: int | None = None) -> int:
        """Training FLOPs per token: 6N + 12 L H Q T (PaLM, appendix B).

        N counts the parameters that take part in matmuls: the position tables are lookups and
        are left out, the word embeddings are counted once, for the tied output projection.
        L counts every attending block (the top query layer included), H Q = d_model.
        """
        return flops_per_token(self.config, seq_len)


def flops_per_token(config: ModelConfig, seq_len: int | None = None) -> int:
    """:meth:`CodeGeeX.estimate_flops` from the config alone."""
    seq_len = config.max_seq_len if seq_len is None else seq_len
    matmul_params = num_params(config) - 2 * config.max_seq_len * config.d_model
    attention = 12 * config.n_attention_layers * config.d_model * seq_len
    return 6 * matmul_params + attention


def num_params(config: ModelConfig) -> int:
    """The parameter count of a model of this shape, without building it."""
    d, f = config.d_model, config.d_ffn
    block = 2 * 2 * d + 4 * (d * d + d) + (d * f + f) + (f * d + d)
    embeddings = (config.padded_vocab_size + 2 * config.max_seq_len) * d
    return embeddings + config.n_attention_layers * block + 2 * d


def _row_blocks(
    n_rows: int, row_values: int, stop_row: int, max_values: int
) -> Iterator[tuple[int, int]]:
    """(first row, row count) of the blocks :meth:`CodeGeeX.initial_row_blocks` draws.

    Every block but the last holds a multiple of 16 values and the last at least 16 (or the
    whole tensor): the condition under which the blocks' draws equal one draw of the whole.
    """
    step = 16 // math.gcd(row_values, 16)
    per_block = max(step, max_values // max(row_values, 1) // step * step)
    first = 0
    while first < min(stop_row, n_rows):
        count = min(per_block, n_rows - first)
        if (n_rows - first - count) * row_values < 16:
            count = n_rows - first  # too small a tail is drawn with this block
        yield first, count
        first += count


def _causal_mask(seq: int, past: int, device) -> tuple[torch.Tensor | None, bool]:
    """The mask for ``seq`` new queries after ``past`` cached positions, as (mask, is_causal)."""
    if past == 0:
        return None, seq > 1
    if seq == 1:
        return None, False  # one new query may see every cached position
    # Query i sits at position past + i: aligned to the bottom right, unlike is_causal.
    mask = torch.ones(seq, past + seq, dtype=torch.bool, device=device).tril(diagonal=past)
    return mask, False


def build_model(
    config: ModelConfig,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    seed: int | None = None,
) -> CodeGeeX:
    """Build on the meta device, then materialise and initialise on ``device``.

    One path for every size: ``device="meta"`` returns the bare skeleton (shapes only, no
    memory), which is how the 13B is inspected on a laptop and sharded before materialising.
    """
    with torch.device("meta"):
        model = CodeGeeX(config)
    if torch.device(device).type == "meta":
        return model
    model.to_empty(device=device)
    model.init_weights(seed or 0)
    if dtype is not None:
        model.to(dtype)
    return model
