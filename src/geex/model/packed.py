"""oneDNN-packed copies of Linear weights: faster CPU matmuls for the few rows of a decode step.

A decode step multiplies a handful of rows (one per sequence) by every weight matrix. In fp32
on a CPU, PyTorch hands each product to MKL's sgemm, which runs such short, wide products far
below the core's peak: on a 2-core AMD EPYC (Zen 4), 8 rows by a 3,072 x 768 weight took 830 us
with ``F.linear`` and 400 us with oneDNN reading the same weight pre-packed into its blocked
layout (the vocabulary projection of the ``small`` preset: 29 ms against 14 ms). This is the
packing ``torch.compile`` does for frozen CPU models (inductor's weight prepacking), done here
eagerly and without freezing: the parameters stay ordinary ``nn.Linear`` weights that train,
save and load as before, and the packed copy sits beside them.

A packed copy is a second copy of those weights in memory, kept until the model is dropped.
It remembers which parameter tensors it was made from, their version counters and storage, so
a weight changed in place (an optimiser step, ``load_state_dict``), given new data
(``Module.to``) or replaced (``load_state_dict(assign=True)``) makes it stale, and a stale copy
is never used: the caller falls back to its ``nn.Linear``. Only writes through ``param.data``,
which bypass the version counter, go unseen (the project makes none). Rows past the batch hint work too, at a lower speed.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def packing_available() -> bool:
    """oneDNN is built into this PyTorch with the operators inductor packs weights with."""
    mkldnn = torch.ops.mkldnn
    return (
        torch.backends.mkldnn.is_available()
        and hasattr(mkldnn, "_reorder_linear_weight")
        and hasattr(mkldnn, "_linear_pointwise")
    )


class PackedLinear:
    """Several ``nn.Linear`` (or a tied embedding) with one input, as one packed fp32 matmul.

    Their outputs are concatenated in the order given, e.g. query, key and value.
    """

    def __init__(self, modules: Sequence[nn.Module], batch_hint: int):
        # (the module's parameter table, name, tensor, version, storage): a dict lookup per
        # check, where getattr on a module goes through nn.Module.__getattr__. The storage
        # catches `param.data = ...` (what Module.to() does), which keeps the version.
        self._sources = [
            (m._parameters, name, p, p._version, p.data_ptr())
            for m in modules
            for name in ("weight", "bias")
            if (p := _param(m, name)) is not None
        ]
        with torch.no_grad():
            weight = (
                torch.cat([m.weight for m in modules]) if len(modules) > 1 else modules[0].weight
            )
            biases = [_param(m, "bias") for m in modules]
            self.bias = None if biases[0] is None else torch.cat(biases).detach().clone()
            self.weight = torch.ops.mkldnn._reorder_linear_weight(weight.detach(), batch_hint)
        self.batch_hint = batch_hint

    def fresh(self) -> bool:
        """Each source parameter is still in its module, unchanged since packing."""
        return all(
            table.get(name) is param and param._version == version and param.data_ptr() == ptr
            for table, name, param, version, ptr in self._sources
        )

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.mkldnn._linear_pointwise(x, self.weight, self.bias, "none", [], "")

    @staticmethod
    def usable(packed: PackedLinear | None) -> bool:
        """Whether ``packed`` exists and is fresh; ask :func:`packed_path` about the input first."""
        return packed is not None and packed.fresh()


def packed_path(x: torch.Tensor) -> bool:
    """Whether packed copies may compute this input: inference on the CPU in fp32.

    Never while tracing for ``torch.compile`` (the compiled step keeps the plain matmuls, and
    checked first so that the trace never reads a packed copy, nor guards on one), nor with
    autograd recording (the packed operator has no backward).
    """
    return (
        not torch.compiler.is_compiling()
        and not torch.is_grad_enabled()
        and x.is_cpu
        and x.dtype == torch.float32
    )


def pack_linears(
    current: PackedLinear | None, modules: Sequence[nn.Module], batch_hint: int
) -> PackedLinear | None:
    """``current`` if still fresh for this hint, else a new packed copy, or None if not packable.

    Packable: plain fp32 CPU tensors (not meta, not a tensor-parallel shard, not created under
    ``torch.inference_mode``, whose tensors keep no version counter to detect changes by).
    """
    if current is not None and current.fresh() and current.batch_hint == batch_hint:
        return current
    if any(_param(m, "weight") is None for m in modules):
        return None  # e.g. a quantized layer, which keeps its weights otherwise
    params = [_param(m, name) for m in modules for name in ("weight", "bias")]
    if not all(
        type(p.data) is torch.Tensor and p.is_cpu and p.dtype == torch.float32
        and not p.is_inference()
        for p in params
        if p is not None
    ):  # fmt: skip
        return None
    return PackedLinear(modules, batch_hint)


def _param(module: nn.Module, name: str) -> torch.Tensor | None:
    # Registered parameters only: a layer that computes its weight (a quantized one) is not packed.
    return module._parameters.get(name)
