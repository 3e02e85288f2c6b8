"""What a model costs: parameters, weight memory per precision, FLOPs per token."""

from __future__ import annotations

from dataclasses import dataclass

from geex.model.codegeex import flops_per_token, num_params
from geex.model.config import ModelConfig

BYTES_PER_PARAM = {"fp32": 4, "bf16": 2, "fp16": 2, "int8": 1}


@dataclass(frozen=True)
class ModelInfo:
    config: ModelConfig
    params: int
    embedding_params: int  # word embeddings (also the tied output head) + the two position tables
    flops_per_token: int  # training: forward + backward, at config.max_seq_len
    weight_bytes: dict[str, int]  # per precision

    @property
    def non_embedding_params(self) -> int:
        return self.params - self.embedding_params


def model_info(config: ModelConfig) -> ModelInfo:
    params = num_params(config)
    return ModelInfo(
        config=config,
        params=params,
        embedding_params=(config.padded_vocab_size + 2 * config.max_seq_len) * config.d_model,
        flops_per_token=flops_per_token(config),
        weight_bytes={name: params * size for name, size in BYTES_PER_PARAM.items()},
    )


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def human_count(n: float) -> str:
    for unit, size in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.2f}{unit}"
    return str(n)
