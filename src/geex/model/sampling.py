"""How decoding draws tokens: one typed config, free of torch so that ``geex generate`` builds
its flags from it without importing torch (the decoding itself is in
:mod:`geex.model.generation`).
"""

from __future__ import annotations

from dataclasses import dataclass

from geex.config import option
from geex.errors import ConfigError


@dataclass
class SamplingConfig:
    """How continuations are drawn; each field is a ``geex generate`` flag."""

    max_new_tokens: int = option(256, help="tokens to generate at most")
    temperature: float = option(0.0, flags=("--temperature", "-t"), help="0 = greedy")
    top_p: float = option(1.0, help="nucleus sampling: the smallest set of tokens of this "
                          "probability (1 = off)")  # fmt: skip
    top_k: int = option(0, help="sample from the k likeliest tokens (0 = off)")
    num_samples: int = option(1, flags=("-n", "--num-samples"), help="continuations per prompt")
    seed: int | None = option(None, help="seed of the sampling, for repeatable samples")

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ConfigError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise ConfigError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise ConfigError(f"top_k must be >= 0, got {self.top_k}")
        if self.num_samples < 1:
            raise ConfigError(f"num_samples must be >= 1, got {self.num_samples}")
        if self.num_samples > 1 and self.temperature == 0:
            raise ConfigError("num_samples > 1 needs temperature > 0: greedy samples are identical")
