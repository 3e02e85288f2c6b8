"""The CodeGeeX architecture, its presets, checkpoints and decoding.

The names below are loaded on first use (PEP 562), so that a light submodule such as
:mod:`geex.model.config` or :mod:`geex.model.sampling` imports without torch: ``geex --help``
builds its flags from them.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "CodeGeeX": "geex.model.codegeex",
    "KVCache": "geex.model.codegeex",
    "build_model": "geex.model.codegeex",
    "flops_per_token": "geex.model.codegeex",
    "num_params": "geex.model.codegeex",
    "ModelConfig": "geex.model.config",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'geex.model' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
