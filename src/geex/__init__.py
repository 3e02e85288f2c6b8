"""Geex: build multilingual code models from 0 to 1, the CodeGeeX way.

Stages, in the order the data flows: ``geex.data`` -> ``geex.tokenizer`` -> ``geex.model``
-> ``geex.train`` -> ``geex.eval`` -> ``geex.serve``.

torch is imported inside :func:`load_model`, so that ``import geex`` and ``geex --help``
stay fast.
"""

__version__ = "0.1.0"


def load_model(path, device="cpu", dtype=None):
    """Load a Geex checkpoint folder (``config.json`` + safetensors weights) as a ready model."""
    from geex.model.checkpoint import load_model as _load_model

    return _load_model(path, device=device, dtype=dtype)


__all__ = ["__version__", "load_model"]
