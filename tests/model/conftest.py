"""A tiny Geex checkpoint with its tokenizer, saved once per module."""

from __future__ import annotations

from pathlib import Path

import pytest

from geex.model import ModelConfig, build_model
from geex.model.checkpoint import save_checkpoint
from geex.tokenizer import train_tokenizer

TEXTS = ["def add(a, b):\n    return a + b\n", "int main() {\n    return 0;\n}\n"] * 20


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A one-layer model and the tokenizer it decodes with, as a Geex checkpoint folder."""
    tokenizer = train_tokenizer(TEXTS, vocab_size=300, languages=["python", "cpp"])
    config = ModelConfig(
        n_layer=1, n_head=2, d_model=32, max_seq_len=64, vocab_size=tokenizer.vocab_size
    )
    folder = tmp_path_factory.mktemp("tiny") / "model"
    save_checkpoint(build_model(config, seed=0).eval(), folder, tokenizer=tokenizer)
    return folder
