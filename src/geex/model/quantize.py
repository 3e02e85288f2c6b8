"""Weight-only INT8 for decoding: CodeGeeX's ``quantize``, applied to a loaded model from outside.

CodeGeeX's INT8 release took its 13B from 26.9 GB of fp16 weights to 14.7 GB, for GPUs too
small for fp16. Its scheme (``codegeex/quantization``), reproduced here: symmetric, round-to-nearest, one scale per output channel,
``scale = max|w_row| / 127`` and ``q = round(w / scale)``; activations stay in the compute
dtype ("W8A16"). Two differences: the scale is kept in the compute dtype and ``q`` is rounded
against that stored scale (so the weight the model uses is exactly ``q * scale``, and a bf16
scale costs nothing beyond the int8 rounding), and the tied word embedding is quantized too,
one scale per row (CodeGeeX kept it in fp16): a lookup dequantizes the rows it reads, the output
head multiplies by the int8 matrix. Biases, LayerNorms and the position tables stay as they are.

:func:`quantize_int8` swaps modules; the model's forward code is unchanged. The head is the one
place the forward reads a weight directly (``F.linear(x, word_embeddings.weight)``), so the
quantized embedding's ``weight`` is an :class:`Int8RowsTensor`, a tensor that reports the
compute dtype and routes ``F.linear`` and ``F.embedding`` to the int8 paths (any other use sees
the dequantized matrix).

Kernels (:func:`int8_linear`), measured on a 2-core x86 CPU, one thread, torch 2.13:

* CPU, at most :data:`PACKED_MM_MAX_ROWS` rows (decoding): ``torch.ops.aten._weight_int8pack_mm``,
  which reads the int8 matrix directly: one row through the small preset's head (50,432 x 768)
  took 5.6 ms against 11.9 ms for the dense fp32 matmul. The kernel accepts fp32 activations
  too, but that path ran 3-10 times slower than the dense fp32 matmul, so fp32 activations go
  through its bf16 path: activations and scales are rounded to bf16 there (a relative 0.4% at
  most, under the int8 rounding of the weights themselves) and the result is fp32 again.
* everything else (prefill, large batches, and CUDA, where no GPU was at hand to measure a
  kernel): the int8 matrix is cast to the compute dtype for this one layer,
  ``F.linear(x, q.to(dtype)) * scale``; on prefill-sized inputs the int8-pack kernel ran up to
  40 times slower than this. It is also the pattern inductor lowers to the int8 kernel under
  ``torch.compile`` (bf16, CPU and CUDA). It costs one layer's weight in the compute dtype,
  transiently (the head's is the largest: vocabulary x width). fp16 scales the weight before
  the matmul: ``x @ q`` (|q| up to 127) can overflow fp16.

Quantization happens at load (``--quantize int8``): checkpoints always hold full-precision
weights, a quantized model refuses to train, and :func:`geex.model.checkpoint.save_checkpoint`
refuses to save one.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils._pytree import tree_map_only

from geex.errors import GeexError
from geex.model.codegeex import MLP, CodeGeeX, SelfAttention

INT8_MAX = 127  # symmetric: -128 is never used, so that -q is representable
# Above this many rows (prompt prefill, big batches) the int8-pack kernel lost to the cast path.
PACKED_MM_MAX_ROWS = 8
_PACKED_DTYPES = (torch.bfloat16, torch.float16)  # the int8-pack kernel's fast activations

TRAINING_REFUSED = (
    "an int8-quantized model cannot be trained (its weights are rounded and have no "
    "gradients): train the full-precision checkpoint and quantize when loading it to decode"
)


def quantize_rows(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(q, scale)`` with ``weight ≈ q * scale[:, None]``: int8 ``q``, one scale per row, in
    ``weight``'s dtype. An all-zero row gets scale 1 (any scale rounds it to zeros)."""
    absmax = weight.detach().float().abs().amax(dim=1)
    scale = torch.where(absmax > 0, absmax / INT8_MAX, torch.ones_like(absmax))
    scale = scale.to(weight.dtype)  # the scale the model will use; round q against it
    q = torch.round(weight.detach().float() / scale.float()[:, None])
    return q.clamp_(-INT8_MAX, INT8_MAX).to(torch.int8), scale


def int8_linear(
    x: torch.Tensor, q: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None = None
) -> torch.Tensor:
    """``F.linear(x, q * scale[:, None], bias)`` without materialising the scaled matrix."""
    dtype = x.dtype
    rows = x.numel() // x.shape[-1]
    # fp32 goes through the kernel's bf16 path: its own fp32 path is the slow one. Not under
    # torch.compile: inductor (2.13) fails to lower the kernel on inputs converted in the graph.
    packed = dtype if dtype in _PACKED_DTYPES else torch.bfloat16
    compiling = torch.compiler.is_compiling()
    if (
        x.device.type == "cpu"
        and rows <= PACKED_MM_MAX_ROWS
        and not (compiling and packed != dtype)
    ):
        flat = x.reshape(rows, x.shape[-1]).to(packed).contiguous()
        y = torch.ops.aten._weight_int8pack_mm(flat, q, scale.to(packed))
        y = y.to(dtype).view(*x.shape[:-1], -1)
        return y if bias is None else y + bias
    scale = scale.to(dtype)
    if dtype == torch.float16:
        y = F.linear(x, q.to(dtype) * scale[:, None])
    else:
        y = F.linear(x, q.to(dtype)) * scale
    return y if bias is None else y + bias


class Int8Linear(nn.Module):
    """An ``nn.Linear`` with an int8 weight and one scale per output channel (buffers)."""

    def __init__(self, q: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None):
        super().__init__()
        self.out_features, self.in_features = q.shape
        self.register_buffer("weight_int8", q)
        self.register_buffer("weight_scale", scale)
        self.bias = None if bias is None else nn.Parameter(bias.detach(), requires_grad=False)

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> Int8Linear:
        return cls(*quantize_rows(linear.weight), linear.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return int8_linear(x, self.weight_int8, self.weight_scale, self.bias)

    def train(self, mode: bool = True) -> Int8Linear:
        if mode:
            raise GeexError(TRAINING_REFUSED)
        return super().train(False)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8"


class Int8Embedding(nn.Module):
    """An ``nn.Embedding`` with int8 rows and one scale per row; ``weight`` serves the tied head."""

    def __init__(self, q: torch.Tensor, scale: torch.Tensor):
        super().__init__()
        self.num_embeddings, self.embedding_dim = q.shape
        self.register_buffer("weight_int8", q)
        self.register_buffer("weight_scale", scale)

    @classmethod
    def from_embedding(cls, embedding: nn.Embedding) -> Int8Embedding:
        return cls(*quantize_rows(embedding.weight))

    @property
    def weight(self) -> Int8RowsTensor:
        return Int8RowsTensor(self.weight_int8, self.weight_scale)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return int8_embedding(ids, self.weight_int8, self.weight_scale)

    def train(self, mode: bool = True) -> Int8Embedding:
        if mode:
            raise GeexError(TRAINING_REFUSED)
        return super().train(False)

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}, int8"


def int8_embedding(ids: torch.Tensor, q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """The rows ``ids`` of ``q * scale[:, None]``, dequantizing only those rows."""
    return F.embedding(ids, q).to(scale.dtype) * F.embedding(ids, scale[:, None])


class Int8RowsTensor(torch.Tensor):
    """A ``(rows, cols)`` matrix stored as int8 rows and per-row scales.

    It reports the scales' dtype (the compute dtype: what a KV cache built from
    ``model.word_embeddings.weight.dtype`` must use) and holds no storage of that dtype.
    ``F.linear(x, t)`` multiplies by the int8 matrix and ``F.embedding(ids, t)`` dequantizes the
    rows read; every other operation sees the dequantized matrix (correct, but full-size).
    """

    q: torch.Tensor
    scale: torch.Tensor

    @staticmethod
    def __new__(cls, q: torch.Tensor, scale: torch.Tensor):
        return torch.Tensor._make_wrapper_subclass(
            cls, q.shape, dtype=scale.dtype, device=q.device, requires_grad=False
        )

    def __init__(self, q: torch.Tensor, scale: torch.Tensor):
        self.q, self.scale = q, scale

    def dequantize(self) -> torch.Tensor:
        return self.q.to(self.scale.dtype) * self.scale[:, None]

    def __repr__(self) -> str:
        return f"Int8RowsTensor(shape={tuple(self.shape)}, dtype={self.dtype}, int8 rows)"

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.linear and _is_rows(args, 1, cls):
            bias = args[2] if len(args) > 2 else kwargs.get("bias")
            return int8_linear(args[0], args[1].q, args[1].scale, bias)
        if func is F.embedding and _is_rows(args, 1, cls) and len(args) == 2 and not kwargs:
            return int8_embedding(args[0], args[1].q, args[1].scale)
        with torch._C.DisableTorchFunctionSubclass():
            return func(*args, **kwargs)

    @classmethod
    def __torch_dispatch__(cls, func, types, args=(), kwargs=None):
        args, kwargs = tree_map_only(cls, lambda t: t.dequantize(), (args, kwargs or {}))
        return func(*args, **kwargs)


def _is_rows(args: tuple, index: int, cls: type) -> bool:
    others = args[:index] + args[index + 1 :]
    return (
        len(args) > index
        and isinstance(args[index], cls)
        and not any(isinstance(a, cls) for a in others)
    )


@dataclass(frozen=True)
class TensorKindBytes:
    """Bytes of one kind of tensor before and after quantization."""

    kind: str
    tensors: int
    bytes_before: int
    bytes_after: int


@dataclass(frozen=True)
class QuantizationReport:
    """What :func:`quantize_int8` did to the weight memory, per kind of tensor."""

    kinds: tuple[TensorKindBytes, ...]

    @property
    def bytes_before(self) -> int:
        return sum(k.bytes_before for k in self.kinds)

    @property
    def bytes_after(self) -> int:
        return sum(k.bytes_after for k in self.kinds)

    @property
    def ratio(self) -> float:
        return self.bytes_after / self.bytes_before

    def lines(self) -> list[str]:
        rows = [
            f"{k.kind}: {k.tensors} tensors, {_mb(k.bytes_before)} -> {_mb(k.bytes_after)}"
            for k in self.kinds
        ]
        total = f"{_mb(self.bytes_before)} -> {_mb(self.bytes_after)} ({self.ratio:.1%})"
        return [*rows, f"weights: {total}"]


def _mb(n: int) -> str:
    return f"{n / 1e6:,.1f} MB"


def weight_bytes(module: nn.Module) -> int:
    """Bytes of every parameter and buffer (shapes and dtypes only: works on the meta device)."""
    tensors = [*module.parameters(), *module.buffers()]
    return sum(t.numel() * t.element_size() for t in tensors)


def is_quantized(model: nn.Module) -> bool:
    return any(isinstance(m, Int8Linear | Int8Embedding) for m in model.modules())


@torch.no_grad()
def quantize_int8(model: CodeGeeX, device: str | torch.device | None = None) -> QuantizationReport:
    """Swap ``model``'s linear layers (attention, MLP, top query layer) and its tied word
    embedding for int8 ones, in place. The model must be in eval mode and already in its
    compute dtype (the scales are rounded to that dtype).

    ``device``: where the quantized model goes, each layer moved there just before it is
    quantized. A GPU then holds the int8 model plus one full-precision layer at most, never the
    whole full-precision model: how a 13B whose bf16 weights would not fit a GPU gets onto it
    in int8 (load on the CPU, quantize onto the GPU). Each full-precision weight is freed as
    its int8 copy replaces it.
    """
    if not isinstance(model, CodeGeeX):
        raise GeexError(f"int8 quantization applies to a Geex CodeGeeX model, not {type(model)}")
    if is_quantized(model):
        raise GeexError("the model is already quantized")
    if model.training:
        raise GeexError(TRAINING_REFUSED)

    def moved(module: nn.Module) -> nn.Module:
        return module if device is None else module.to(device)

    total_before = weight_bytes(model)
    linear = [0, 0, 0]  # tensors, bytes before, bytes after
    for module in list(model.modules()):
        if not isinstance(module, SelfAttention | MLP):
            continue
        for name, child in list(module.named_children()):
            if isinstance(child, nn.Linear):
                before = weight_bytes(child)
                swapped = Int8Linear.from_linear(moved(child))
                setattr(module, name, swapped)
                linear = [linear[0] + 1, linear[1] + before, linear[2] + weight_bytes(swapped)]
    embedding = model.word_embeddings
    embedding_before = weight_bytes(embedding)
    model.word_embeddings = Int8Embedding.from_embedding(moved(embedding))
    embedding_after = weight_bytes(model.word_embeddings)
    moved(model)  # what stays in full precision: position tables, norms, biases
    kept = total_before - linear[1] - embedding_before
    return QuantizationReport(
        (
            TensorKindBytes("linear layers", linear[0], linear[1], linear[2]),
            TensorKindBytes("word embedding (tied head)", 1, embedding_before, embedding_after),
            TensorKindBytes("kept (positions, norms)", _count_kept(model), kept, kept),
        )
    )


def _count_kept(model: nn.Module) -> int:
    quantized = (Int8Linear, Int8Embedding)
    return sum(
        1
        for module in model.modules()
        if not isinstance(module, quantized)
        for _ in module.parameters(recurse=False)
    )
