"""The shape of a CodeGeeX model, as one typed config.

A config holds only what the weights' shapes and the forward pass depend on; how a model is
trained or sharded lives in the training config. Presets live in :mod:`geex.presets`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from geex.config import from_dict
from geex.errors import ConfigError

# Megatron pads the vocabulary so the embedding splits evenly over tensor-parallel ranks and
# its matmuls hit tensor-core friendly shapes; 128 covers 8-way TP with 16-wide tiles.
DEFAULT_VOCAB_MULTIPLE = 128


@dataclass
class ModelConfig:
    """Dimensions of a CodeGeeX decoder.

    ``n_layer`` counts the ordinary transformer blocks only: every model has one more block on
    top, the *top query layer* (CodeGeeX-13B: 39 blocks + the top query layer = 40).
    """

    n_layer: int
    n_head: int
    d_model: int
    max_seq_len: int
    vocab_size: int
    padded_vocab_size: int | None = None  # None: vocab_size rounded up to a multiple of 128
    d_ffn: int | None = None  # None: 4 * d_model, as in CodeGeeX
    layernorm_eps: float = 1e-5
    init_std: float = 0.02
    dropout: float = 0.0

    def __post_init__(self) -> None:
        if self.padded_vocab_size is None:
            multiple = DEFAULT_VOCAB_MULTIPLE
            self.padded_vocab_size = -(-self.vocab_size // multiple) * multiple
        if self.d_ffn is None:
            self.d_ffn = 4 * self.d_model
        self._validate()

    def _validate(self) -> None:
        for name in ("n_layer", "n_head", "d_model", "max_seq_len", "vocab_size", "d_ffn"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"model.{name} must be a positive integer, got {value!r}")
        if self.d_model % self.n_head:
            raise ConfigError(
                f"model.d_model ({self.d_model}) must be divisible by model.n_head ({self.n_head})"
            )
        if self.padded_vocab_size < self.vocab_size:
            raise ConfigError(
                f"model.padded_vocab_size ({self.padded_vocab_size}) is smaller than "
                f"model.vocab_size ({self.vocab_size})"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"model.dropout must be in [0, 1), got {self.dropout}")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_head

    @property
    def n_attention_layers(self) -> int:
        """Blocks that attend (and hold a KV cache): the ordinary ones plus the top query layer."""
        return self.n_layer + 1

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, fields: dict) -> ModelConfig:
        return from_dict(cls, fields, kind="model")

    def replace(self, **changes) -> ModelConfig:
        """A copy with some fields changed.

        Derived fields follow their source: a new ``vocab_size`` re-derives the padding, and a
        new ``d_model`` re-derives ``d_ffn`` when it was the default 4 * d_model.
        """
        if "vocab_size" in changes and "padded_vocab_size" not in changes:
            changes["padded_vocab_size"] = None
        if "d_model" in changes and "d_ffn" not in changes and self.d_ffn == 4 * self.d_model:
            changes["d_ffn"] = None
        return ModelConfig.from_dict({**self.to_dict(), **changes})
