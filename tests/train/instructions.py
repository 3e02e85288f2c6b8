"""A small instruction set and a tiny base model with its tokenizer, for fine-tuning tests.

Questions ask about a made-up word of lowercase letters; answers are digits alone. A model
trained on the answers only learns the digits that follow each question and nothing of the
words, which the tests tell apart by the loss on each.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from geex.model import ModelConfig, build_model
from geex.model.checkpoint import save_checkpoint
from geex.tokenizer import train_tokenizer

TOKENIZER_TEXTS = [
    "def add(a, b):\n    return a + b\n",
    "User: what is this?\nAssistant: a number\n",
    "0123456789 abcdefghijklmnopqrstuvwxyz\n",
] * 20


def instruction_rows(n: int = 8, seed: int = 0) -> list[dict]:
    """``n`` rows, half in OpenAI's shape and half in Alpaca's, with fixed random contents."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        word = "".join(rng.choice(list("abcdefghijklmnopqrstuvwxyz"), size=6))
        answer = " ".join(str(d) for d in rng.integers(0, 10, size=4))
        if i % 2:
            rows.append({"instruction": f"Number for {word}?", "output": answer})
        else:
            rows.append(
                {
                    "messages": [
                        {"role": "user", "content": f"Number for {word}?"},
                        {"role": "assistant", "content": answer},
                    ]
                }
            )
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def write_base_model(folder: Path, *, max_seq_len: int = 64) -> Path:
    """A random two-layer model and its tokenizer, as a Geex checkpoint folder."""
    tokenizer = train_tokenizer(TOKENIZER_TEXTS, vocab_size=300, languages=["python"])
    config = ModelConfig(
        n_layer=2, n_head=4, d_model=64, max_seq_len=max_seq_len, vocab_size=tokenizer.vocab_size
    )
    save_checkpoint(build_model(config, seed=0), folder, tokenizer=tokenizer)
    return folder


def sft_config(base: Path, data: Path, out: Path, **fields) -> dict:
    """``TrainConfig`` fields of a short fine-tuning run: 8 sequences of 64 tokens per step."""
    return {
        "sft": str(data),
        "init_from": str(base),
        "out": str(out),
        "seq_len": 64,
        "global_batch_tokens": 512,
        "micro_batch_size": 4,
        "max_steps": 150,
        "eval_every": 0,
        "checkpoint_every": 0,
        "optim": {"warmup_steps": 2, "lr": 4e-3, "weight_decay": 0.0},
        # Frozen weights are compared bit for bit and merges to 1e-5: fp32 on every host, not
        # the tiny preset's auto (bf16 on CPUs with AMX or AVX-512 BF16).
        "precision": "fp32",
        **fields,
    }
