"""Geex: build multilingual code models from 0 to 1, the CodeGeeX way.

Stages, in the order the data flows: ``geex.data`` -> ``geex.tokenizer`` -> ``geex.model``
-> ``geex.train`` -> ``geex.eval`` -> ``geex.serve``.

Two ways into a checkpoint folder, for two jobs: ``load_for_inference`` to decode (model +
tokenizer, device and dtype chosen for you, the pair checked against each other), and
``load_model`` for the weights alone, exactly as stored (converting, inspecting, fine-tuning).
Both import torch inside, so that ``import geex`` and ``geex --help`` stay fast.
"""

__version__ = "0.1.0"


def load_model(path, device="cpu", dtype=None):
    """The model of a Geex checkpoint folder, on ``device``, in its stored dtype unless
    ``dtype`` is given; no tokenizer. To decode, use :func:`load_for_inference`."""
    from geex.model.checkpoint import load_model as _load_model

    return _load_model(path, device=device, dtype=dtype)


def load_for_inference(path, *, tokenizer=None, device="auto", dtype="auto", quantize=None):
    """A Geex checkpoint ready to decode: ``.model``, ``.tokenizer``, ``.device``, ``.dtype``;
    ``quantize="int8"`` for weight-only INT8. See :func:`geex.model.loader.load_for_inference`."""
    from geex.model.loader import load_for_inference as _load_for_inference

    return _load_for_inference(
        path, tokenizer=tokenizer, device=device, dtype=dtype, quantize=quantize
    )


__all__ = ["__version__", "load_for_inference", "load_model"]
