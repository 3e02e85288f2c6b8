"""A Geex checkpoint made ready to decode: the model, its tokenizer, where and in which precision.

``geex generate``, ``geex serve``, the Geex evaluation backend and ``geex run``'s samples all
load a model the same way, here: the tokenizer saved with the checkpoint (or one named), the
check that the tokenizer's ids fit the model's embedding, the device and dtype resolved from
what the user typed ("auto", "cuda:1", "bf16"), the model in eval mode, quantized when asked
(``--quantize int8``, :mod:`geex.model.quantize`: in the compute dtype first, so the scales are
rounded to it, then onto the device layer by layer, so the full-precision model need not fit a
GPU).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from geex.errors import GeexError
from geex.model.checkpoint import load_model, read_config
from geex.model.codegeex import CodeGeeX
from geex.model.config import ModelConfig
from geex.model.device import resolve_device, resolve_dtype
from geex.model.generation_defaults import resolve_penalty, saved_repetition_penalty
from geex.model.load_options import check_quantize
from geex.model.sampling import SamplingConfig

if TYPE_CHECKING:
    from geex.tokenizer import Tokenizer


@dataclass(frozen=True)
class InferenceModel:
    """A loaded model and the tokenizer it decodes with."""

    model: CodeGeeX
    tokenizer: Tokenizer
    device: torch.device
    dtype: torch.dtype
    name: str  # the checkpoint folder's name: what a server reports as its model
    quantize: str | None = None  # "int8" when the weights were quantized at load
    # The folder's generation_config.json penalty (geex.model.generation_defaults); None: none
    repetition_penalty: float | None = None

    def sampling(self, sampling: SamplingConfig) -> SamplingConfig:
        """``sampling`` with the model's repetition penalty where it sets none."""
        penalty = resolve_penalty(sampling.repetition_penalty, self.repetition_penalty)
        return dataclasses.replace(sampling, repetition_penalty=penalty)


def load_for_inference(
    folder: str | os.PathLike,
    *,
    tokenizer: str | os.PathLike | None = None,
    device: str | torch.device = "auto",
    dtype: str | torch.dtype = "auto",
    quantize: str | None = None,
) -> InferenceModel:
    """The checkpoint in ``folder`` with its tokenizer (or ``tokenizer``), ready to decode.

    ``device``: "auto" (the GPU when there is one), "cpu", "cuda", "cuda:N".
    ``dtype``: "auto" (bf16 on GPUs that support it, else fp32), "fp32", "bf16", "fp16".
    ``quantize``: None, or "int8" (weight-only; activations stay in ``dtype``).
    The tokenizer is checked against the model's config before any weight is read, so a
    mismatch costs no time on a large checkpoint.
    """
    from geex.tokenizer import load_tokenizer

    check_quantize(quantize)
    folder = Path(folder)
    if not folder.exists():
        raise GeexError(f"model folder {folder}: no such folder")
    if not folder.is_dir():
        raise GeexError(f"model {folder} is a file; expected a Geex checkpoint folder")
    config = read_config(folder)
    penalty = saved_repetition_penalty(folder)  # a bad file fails before any weight is read
    if tokenizer is not None:
        tok = load_tokenizer(tokenizer)
    else:
        try:
            tok = load_tokenizer(folder)
        except GeexError as err:
            raise GeexError(
                f"no tokenizer saved with the model ({err}); name the one it was trained "
                "with (--tokenizer PATH)"
            ) from None
    check_tokenizer_fits(tok, config)

    where = resolve_device(str(device))
    precision = dtype if isinstance(dtype, torch.dtype) else resolve_dtype(dtype, where)
    if quantize == "int8":
        from geex.model.quantize import quantize_int8

        # Quantized onto the device layer by layer: the full-precision model need not fit it.
        model = load_model(folder, device="cpu", dtype=precision)
        quantize_int8(model, device=where)
    else:
        model = load_model(folder, device=where, dtype=precision)
    name = folder.resolve().name
    return InferenceModel(model, tok, where, precision, name, quantize, penalty)


def check_tokenizer_fits(tokenizer: Tokenizer, config: ModelConfig) -> None:
    """A tokenizer whose ids run past the embedding would index out of range mid-decode."""
    if tokenizer.vocab_size > config.padded_vocab_size:
        raise GeexError(
            f"the tokenizer has {tokenizer.vocab_size:,} ids but the model embeds only "
            f"{config.padded_vocab_size:,}: they were not trained together"
        )
