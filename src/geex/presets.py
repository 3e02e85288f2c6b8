"""Every named preset, in one place.

Model presets follow the GPT-3 family's widths and depths (as CodeGeeX did) with CodeGeeX's
layout: the depth given is the number of ordinary blocks, the top query layer comes on top.
"""

from __future__ import annotations

import copy

from geex.errors import ConfigError
from geex.model.checkpoint import read_config
from geex.model.config import ModelConfig

CODEGEEX_VOCAB_SIZE = 50_400  # GPT-2's 50,257 + 143 <|extratoken_N|>

MODEL_PRESETS: dict[str, ModelConfig] = {
    # Trains usefully in minutes on a 2-core CPU, with a tokenizer of 8,192 ids trained on the
    # local corpus (`geex tokenizer train` defaults to that size).
    "tiny": ModelConfig(n_layer=3, n_head=4, d_model=256, max_seq_len=256, vocab_size=8192),
    # GPT-3 Small/Medium/XL widths and depths, CodeGeeX tokenizer, 2,048 positions.
    "small": ModelConfig(
        n_layer=11, n_head=12, d_model=768, max_seq_len=2048, vocab_size=CODEGEEX_VOCAB_SIZE
    ),
    "350m": ModelConfig(
        n_layer=23, n_head=16, d_model=1024, max_seq_len=2048, vocab_size=CODEGEEX_VOCAB_SIZE
    ),
    "1.3b": ModelConfig(
        n_layer=23, n_head=16, d_model=2048, max_seq_len=2048, vocab_size=CODEGEEX_VOCAB_SIZE
    ),
    # CodeGeeX-13B exactly: 39 blocks + the top query layer, vocabulary padded to 52,224
    # (CodeGeeX ran Megatron with make_vocab_size_divisible_by=52224).
    "codegeex-13b": ModelConfig(
        n_layer=39,
        n_head=40,
        d_model=5120,
        d_ffn=20480,
        max_seq_len=2048,
        vocab_size=CODEGEEX_VOCAB_SIZE,
        padded_vocab_size=52_224,
    ),
}


def model_preset(name: str) -> ModelConfig:
    """A fresh copy of a model preset (callers may change it freely)."""
    try:
        return MODEL_PRESETS[name].replace()
    except KeyError:
        raise ConfigError(
            f"unknown model preset {name!r}; known presets: {', '.join(MODEL_PRESETS)}"
        ) from None


# Training defaults per model preset: what `geex train --preset NAME` uses for every field the
# user does not set. Global batches follow GPT-3's sizes for the family; CodeGeeX-13B's is the
# paper's 3,072 sequences of 2,048 tokens (micro-batch 16), fp16, 8-way tensor parallel.
TRAIN_PRESETS: dict[str, dict] = {
    "tiny": {
        # Small batches: on 2 CPU cores 4k-token batches reached a given loss with half the
        # tokens of 8k-token ones. Muon at lr 2e-3, from the laptop sweep (docs/training.md):
        # at the 4M tokens of a 10-minute run, AdamW at 5e-4 reached 4.3% lower bits per byte
        # on HumanEval-X's programs than at 2e-3 (two seeds each; 1e-3, 2.5e-4 and 4e-3 were
        # worse), Muon at 5e-4 6% lower again, Muon at 1e-3 6.5% lower than that, and Muon at
        # 2e-3 3.8% and 5.1% lower again (two seeds; 4e-3 was 1.5% lower still, but no more
        # of its completions parsed and fewer stayed in their language, in both seeds).
        "global_batch_tokens": 4_096,
        "micro_batch_size": 8,
        "eval_every": 50,
        "eval_tokens": 4_096,  # per language: a validation costs ~5% of 50 steps on a CPU
        "checkpoint_every": 100,
        # bf16 where the CPU or GPU multiplies it natively (AMX, AVX-512 BF16, CUDA), else
        # fp32: with AMX a 10-minute run trained 2.45x the tokens of fp32, at the same loss
        # per step, and reached 2.02 bits/byte instead of 2.33 (geex.train.precision).
        "precision": "auto",
        "optim": {"optimizer": "muon", "lr": 2e-3, "min_lr": 2e-4, "warmup_steps": 10},
    },
    "small": {
        "global_batch_tokens": 524_288,
        "micro_batch_size": 8,
        "precision": "bf16",
        "optim": {"lr": 6e-4, "min_lr": 6e-5, "warmup_steps": 2_000},
    },
    "350m": {
        "global_batch_tokens": 524_288,
        "micro_batch_size": 8,
        "precision": "bf16",
        "optim": {"lr": 3e-4, "min_lr": 3e-5, "warmup_steps": 2_000},
    },
    "1.3b": {
        "global_batch_tokens": 1_048_576,
        "micro_batch_size": 4,
        "precision": "bf16",
        "parallel": {"fsdp": True, "activation_checkpointing": "full"},
        "optim": {"lr": 2e-4, "min_lr": 2e-5, "warmup_steps": 2_000},
    },
    "codegeex-13b": {
        "global_batch_tokens": 3_072 * 2_048,
        "micro_batch_size": 16,
        "precision": "fp16",
        "parallel": {"tp": 8, "fsdp": True, "activation_checkpointing": "full"},
        "optim": {"lr": 1e-4, "min_lr": 1e-6, "warmup_steps": 1_000},
        "checkpoint_every": 500,
        "eval_every": 1_000,
    },
}


# Decoding defaults a preset's trained models are saved with, in their generation_config.json;
# every decoder uses them where the user or the request sets none
# (geex.model.generation_defaults). tiny: a greedy 10-minute model loops on its likeliest
# tokens; a penalty of 1.2 on the last 64 tokens had 1.5 to 2.5 times as many of its
# completions parse (docs/training.md, "Decoding a young model"). The larger presets set none:
# a penalty also pushes a good model off the names and brackets code repeats.
GENERATION_PRESETS: dict[str, dict] = {
    "tiny": {"repetition_penalty": 1.2},
}


def generation_preset(name: str) -> dict:
    """The decoding defaults a preset's models are saved with (empty for none)."""
    return dict(GENERATION_PRESETS.get(name, {}))


def preset_decoding_penalty(name: str, config: ModelConfig) -> float | None:
    """Preset ``name``'s repetition penalty for a model of ``config``, if it has the preset's
    shape (vocabulary and context aside): the penalty was measured on that shape only."""
    preset = MODEL_PRESETS.get(name)
    if preset is None or _shape(preset) != _shape(config):
        return None
    return generation_preset(name).get("repetition_penalty")


def _shape(config: ModelConfig) -> tuple[int, int, int, int]:
    return (config.n_layer, config.d_model, config.n_head, config.d_ffn)


def train_preset(name: str) -> dict:
    """Training field defaults for a model preset (a deep copy; empty for unknown names)."""
    return copy.deepcopy(TRAIN_PRESETS.get(name, {}))


def preset_of_checkpoint(folder) -> str | None:
    """The model preset whose shape a checkpoint has (vocabulary aside), if any."""
    config = read_config(folder)
    for name, preset in MODEL_PRESETS.items():
        if _shape(preset) == _shape(config):
            return name
    return None
