"""What a resumed run must share with the run that wrote its checkpoints.

A checkpoint restored into another model shape, or trained on ids from another tokenizer,
does not fail: torch distributed checkpoint loads the tensors the new model asks for (fewer
layers: a partial load) and the embedding rows mean other strings (the loss jumps, nothing
says why). So a run records its :func:`run_identity` when it starts, and a resumption is
refused, naming both values, when its own differs; :func:`check_checkpoint_shapes` compares
each checkpoint's tensors with the model's before it is loaded, which also covers run folders
written before the record existed.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from torch import nn

from geex.data.shards import TokenShards
from geex.errors import ConfigError, GeexError
from geex.model.checkpoint import shape_mismatches, tensor_shapes
from geex.model.config import ModelConfig

# ModelConfig fields a resumption may change: they shape no tensor and change no forward pass
# of a trained model.
FREE_MODEL_FIELDS = ("dropout", "init_std")
TOKENIZER_FILE = "tokenizer.json"


def run_identity(model_config: ModelConfig, tokenizer: dict) -> dict:
    """The model shape and the tokenizer (:func:`tokenizer_identity`) of a run, as JSON values."""
    model = {k: v for k, v in model_config.to_dict().items() if k not in FREE_MODEL_FIELDS}
    return {"model": model, "tokenizer": tokenizer}


def tokenizer_identity(folder: Path, vocab_size: int, eod_id: int) -> dict:
    """What fixes the meaning of a run's ids: the vocabulary, end-of-document id, and the
    digest of the tokenizer.json in ``folder`` (a dataset's, or the fine-tuned model's; None
    for datasets written without one)."""
    path = folder / TOKENIZER_FILE
    digest = None
    if path.is_file():
        with open(path, "rb") as f:
            digest = hashlib.file_digest(f, "sha256").hexdigest()
    return {"vocab_size": vocab_size, "eod_id": eod_id, "sha256": digest, "data": str(folder)}


def shards_tokenizer_identity(shards: TokenShards) -> dict:
    return tokenizer_identity(shards.folder, shards.vocab_size, shards.eod_id)


def check_same_identity(recorded: dict, current: dict, run: Path) -> None:
    """Refuse to resume ``run`` (trained as ``recorded``) as ``current``, naming both values."""
    changed = [
        f"model.{key}={value} (this run: {current['model'].get(key)})"
        for key, value in recorded.get("model", {}).items()
        if current["model"].get(key) != value
    ]
    if changed:
        raise ConfigError(
            f"{run} was trained with {', '.join(changed)}: resume with the model it was "
            f"trained with, or train the new shape in a new --out (or --overwrite)"
        )
    before, now = recorded.get("tokenizer"), current["tokenizer"]
    fields = ("vocab_size", "eod_id", "sha256")
    if before and any(before.get(f) != now.get(f) for f in fields):
        raise ConfigError(
            f"{run} was trained on ids from another tokenizer: {_describe(before)}; this "
            f"run's data has {_describe(now)}: resume with data tokenized as before, or "
            f"train on this data in a new --out"
        )


def _describe(tokenizer: dict) -> str:
    digest = tokenizer.get("sha256")
    file = f"tokenizer.json sha256 {digest[:12]}" if digest else "no tokenizer.json"
    return (
        f"{tokenizer.get('data')} (vocab_size {tokenizer.get('vocab_size')}, "
        f"eod_id {tokenizer.get('eod_id')}, {file})"
    )


def model_shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    """Every tensor of ``model`` by name; a DTensor's shape is the global one, so the same
    on every parallel layout."""
    return {name: tuple(tensor.shape) for name, tensor in model.state_dict().items()}


def check_checkpoint_shapes(checkpoint: Path, metadata, shapes: dict[str, tuple]) -> None:
    """Refuse a training checkpoint whose model tensors (from its dcp ``metadata``) are not
    exactly ``shapes``, the model's tensors by name."""
    saved = {
        name.removeprefix("model."): tuple(entry.size)
        for name, entry in metadata.state_dict_metadata.items()
        if name.startswith("model.") and hasattr(entry, "size")
    }
    problems = shape_mismatches(shapes, saved)
    if problems:
        raise ConfigError(
            f"checkpoint {checkpoint} holds another model shape than this run's "
            f"({'; '.join(problems)}): resume with the model settings it was trained with, "
            f"or train in a new --out"
        )


def check_init_weights(folder: str | Path, model: nn.Module) -> None:
    """Refuse fine-tuning weights that do not fit the model their own config.json describes
    (a damaged or hand-edited checkpoint), before the load fails inside torch."""
    problems = shape_mismatches(model_shapes(model), tensor_shapes(folder))
    if problems:
        raise GeexError(
            f"the weights in {folder} do not fit the model its config.json describes "
            f"({'; '.join(problems)}): convert or export the checkpoint again"
        )
