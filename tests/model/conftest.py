"""A tiny Geex checkpoint with its tokenizer, saved once per module, and the way to run the
`geex` command on it in a process of its own."""

from __future__ import annotations

import os
import subprocess
import sys
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


def run_geex(*args: str | os.PathLike, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """``geex ARGS`` in a process of its own, as a user runs it; never raises on failure."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    command = [sys.executable, "-m", "geex", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, env=env, cwd=cwd, timeout=300)


def one_line_error(result: subprocess.CompletedProcess) -> str:
    """The error of a refused command, checked to be one line without a traceback."""
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    return result.stderr.strip()
