"""TF32 for fp32 training on GPUs that have it, said explicitly rather than left to defaults.

Ampere and later GPUs (compute capability 8.0 and up) multiply fp32 matrices on tensor cores
in TF32: fp32's range with a 10-bit mantissa, 8x (A100) to 7x (H100) faster than the CUDA
cores. PyTorch leaves it off for matmuls by default ("highest" precision), so an fp32 run
used the CUDA cores while its MFU was divided by the TF32 peak. Training in fp32 now turns it
on (``tf32: true``, the default) or explicitly off (``--no-tf32``), and MFU divides by the peak
of what ran (:func:`geex.train.monitor.matmul_arithmetic`). bf16 and fp16 runs leave the
switches as they are: their matmuls run in the autocast dtype.
"""

from __future__ import annotations

import contextlib

import torch

TF32_CAPABILITY = (8, 0)  # Ampere


def has_tf32(device: torch.device) -> bool:
    """Whether ``device`` is a GPU with TF32 tensor cores."""
    return device.type == "cuda" and torch.cuda.get_device_capability(device) >= TF32_CAPABILITY


def tf32_applies(precision: str, wanted: bool, device: torch.device) -> bool:
    """Whether a run in ``precision`` with ``tf32: wanted`` runs its matmuls in TF32."""
    return wanted and precision == "fp32" and has_tf32(device)


@contextlib.contextmanager
def fp32_matmuls(precision: str, tf32: bool, device: torch.device):
    """Inside, fp32 matmuls and cuDNN convolutions on ``device`` run in TF32 when ``tf32``,
    in full fp32 when not; the process's settings come back on leaving. Only fp32 runs on a
    GPU with TF32 change them."""
    if precision != "fp32" or not has_tf32(device):
        yield
        return
    before = torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32
    torch.set_float32_matmul_precision("high" if tf32 else "highest")
    torch.backends.cudnn.allow_tf32 = tf32
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(before[0])
        torch.backends.cudnn.allow_tf32 = before[1]
