"""Where and in which precision a checkpoint is loaded to decode: the options `geex generate`,
`geex serve` and `geex eval` share, read by :func:`geex.model.loader.load_for_inference`.

Free of torch, so that the subcommands build their flags from it and ``geex --help`` stays
fast; :mod:`geex.model.device` turns the names into torch devices and dtypes.
"""

from __future__ import annotations

from dataclasses import dataclass

from geex.config import option

DTYPE_NAMES = ("auto", "fp32", "bf16", "fp16")
QUANTIZE_NAMES = ("int8",)


@dataclass
class LoadOptions:
    tokenizer: str | None = option(
        None, metavar="PATH", help="tokenizer of a Geex model (default: the one saved with it)"
    )
    device: str = option("auto", help="cpu, cuda, cuda:1, ... (default auto: the GPU if any)")
    dtype: str = option(
        "auto", choices=DTYPE_NAMES, help="auto: bf16 on GPUs that support it, else fp32"
    )
    quantize: str | None = option(
        None,
        choices=QUANTIZE_NAMES,
        help="int8: weight-only INT8 at load, about half the bf16 weight memory "
        "(activations stay in --dtype)",
    )
