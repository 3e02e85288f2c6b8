"""Loading a Hugging Face causal language model and its tokenizer, for every stage that runs one.

The evaluation's Hugging Face backend and ``geex serve`` both load ``AutoModelForCausalLM``
with its ``AutoTokenizer`` from a Hub name or a local folder, on the device and in the dtype
the user named, and both say the same thing when it fails.

``transformers`` is an optional dependency (``geex[hf]``) and heavy: it is imported when a
model is loaded, so that the modules that use it import, and say what to install, on the base
install.
"""

from __future__ import annotations

import os

from geex.errors import GeexError
from geex.model.device import resolve_device, resolve_dtype


def import_transformers():
    """The ``transformers`` module, or one GeexError naming the install command."""
    try:
        import transformers
    except ModuleNotFoundError as err:
        if err.name != "transformers":
            raise
        raise GeexError("Hugging Face models need transformers: pip install 'geex[hf]'") from None
    return transformers


def load_causal_lm(
    name_or_folder: str | os.PathLike,
    *,
    tokenizer: str | os.PathLike | None = None,
    device: str = "auto",
    dtype: str = "auto",
    trust_remote_code: bool = False,
):
    """``(model, tokenizer)``: the model in eval mode on its device, and its tokenizer (or the
    one at ``tokenizer``)."""
    transformers = import_transformers()
    where = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, where)
    # transformers renamed torch_dtype to dtype in 4.56; 5.x warns about the old name.
    major, minor = (int(x) for x in transformers.__version__.split(".")[:2])
    dtype_key = "dtype" if (major, minor) >= (4, 56) else "torch_dtype"
    source = str(name_or_folder)
    try:
        tok = transformers.AutoTokenizer.from_pretrained(
            str(tokenizer) if tokenizer is not None else source,
            trust_remote_code=trust_remote_code,
        )
        model = transformers.AutoModelForCausalLM.from_pretrained(
            source, trust_remote_code=trust_remote_code, **{dtype_key: torch_dtype}
        )
    except (OSError, ValueError, KeyError) as err:
        hint = (
            " (a folder with its own model code needs --trust-remote-code)"
            if not trust_remote_code and "trust_remote_code" in str(err)
            else ""
        )
        raise GeexError(f"cannot load {source!r}: {err}{hint}") from None
    return model.to(where).eval(), tok
