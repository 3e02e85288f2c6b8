"""The CodeGeeX architecture, its presets, checkpoints and decoding.

The names below are loaded on first use (PEP 562), so that a light submodule such as
:mod:`geex.model.config` or :mod:`geex.model.sampling` imports without torch: ``geex --help``
builds its flags from them.
"""

from __future__ import annotations

from geex.lazy_exports import lazy_exports

_MODEL = "geex.model.codegeex"
_EXPORTS = {
    "CodeGeeX": _MODEL,
    "KVCache": _MODEL,
    "build_model": _MODEL,
    "flops_per_token": _MODEL,
    "num_params": _MODEL,
    "ModelConfig": "geex.model.config",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
