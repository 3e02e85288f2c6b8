"""Choosing where and in which precision a model runs, from what the user typed."""

from __future__ import annotations

import torch

from geex.errors import GeexError

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks the GPU when there is one; an unavailable device is a clear error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise GeexError(f"unknown device {name!r}; try cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise GeexError(f"device {name!r} asked for, but this PyTorch sees no CUDA GPU")
        if device.index is not None and device.index >= torch.cuda.device_count():
            count = torch.cuda.device_count()
            raise GeexError(f"device {name!r} asked for, but this machine has {count} GPU(s)")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise GeexError(f"device {name!r} asked for, but this PyTorch has no Apple GPU (MPS)")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise GeexError(f"Geex runs on cpu, cuda or mps, not {name!r}")
    return device


def resolve_dtype(name: str, device: torch.device) -> torch.dtype | None:
    """``auto``: bf16 on GPUs that support it, fp32 elsewhere (None keeps the stored dtype)."""
    if name == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    if name not in DTYPES:
        raise GeexError(f"unknown dtype {name!r}; choose one of {', '.join(DTYPES)}")
    return DTYPES[name]
