"""The CodeGeeX architecture, its presets, checkpoints and decoding."""

from geex.model.codegeex import CodeGeeX, KVCache, build_model, flops_per_token, num_params
from geex.model.config import ModelConfig

__all__ = ["CodeGeeX", "KVCache", "ModelConfig", "build_model", "flops_per_token", "num_params"]
