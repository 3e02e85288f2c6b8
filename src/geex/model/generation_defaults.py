"""A model's own decoding default, kept in its folder's ``generation_config.json``.

Hugging Face model folders carry the sampling settings a model is best decoded with in
``generation_config.json``; transformers and vLLM apply them where a request sets nothing, as
Ollama does with a Modelfile's ``PARAMETER`` lines. Geex reads the one setting all its decoders
share with that file, ``repetition_penalty``, from Geex checkpoints and Hugging Face folders
alike. ``geex serve`` (every protocol), ``geex generate``, ``geex eval`` with a local model and
``geex run``'s evaluation and samples use it wherever the user or the request gives no penalty.

``geex train`` writes it for the presets that measured one
(:data:`geex.presets.GENERATION_PRESETS`). A model trained for minutes on a laptop loops on
its likeliest tokens under greedy decoding (``str, str, str, ...``); a penalty on the last 64
tokens breaks most loops, and 1.5 to 2.5 times as many of its completions parse
(docs/training.md, "Decoding a young model").
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from geex.atomic import atomic_write_text
from geex.config import read_json_object
from geex.errors import ConfigError, GeexError
from geex.model.sampling import check_penalty

GENERATION_CONFIG = "generation_config.json"


def saved_repetition_penalty(folder: str | os.PathLike) -> float | None:
    """The ``repetition_penalty`` in ``folder``'s ``generation_config.json``; None when the
    folder names none. A value decoding cannot use is refused, naming the file."""
    fields = _read(Path(folder) / GENERATION_CONFIG)
    value = fields.get("repetition_penalty")
    if value is None:
        return None
    try:
        check_penalty(value, "repetition_penalty")
    except ConfigError as err:
        raise GeexError(f"{Path(folder) / GENERATION_CONFIG}: {err}") from None
    return float(value)


def save_repetition_penalty(folder: str | os.PathLike, penalty: float | None) -> None:
    """Set ``folder``'s ``repetition_penalty`` (its other fields stay), or remove it (None): a
    model saved again over an older one keeps no penalty it was not given."""
    path = Path(folder) / GENERATION_CONFIG
    fields = _read(path)
    fields.pop("repetition_penalty", None)
    if penalty is not None:
        check_penalty(penalty, "repetition_penalty")
        fields["repetition_penalty"] = penalty
    if fields:
        atomic_write_text(path, json.dumps(fields, indent=2) + "\n")
    else:
        path.unlink(missing_ok=True)


def resolve_penalty(
    asked: float | None, model_default: float | None, fallback: float = 1.0
) -> float:
    """The penalty to decode with: the one asked for, else the model's, else ``fallback``."""
    if asked is not None:
        return asked
    return model_default if model_default is not None else fallback


def _read(path: Path) -> dict:
    return read_json_object(path) if path.is_file() else {}
