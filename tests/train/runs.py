"""Helpers to run `geex train` in tests: in-process, or as real processes (torchrun, kill)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

from geex.train.monitor import read_metrics

SMALL_MODEL = {"n_layer": 2, "d_model": 64, "n_head": 4, "max_seq_len": 64}


def write_config(path: Path, data: Path, **fields) -> Path:
    config = {
        "data": str(data),
        "preset": "tiny",
        "model": SMALL_MODEL,
        "seq_len": 64,
        "global_batch_tokens": 1024,
        "micro_batch_size": 4,
        "max_steps": 3,
        "eval_every": 0,
        "checkpoint_every": 0,
        # AdamW, not the tiny preset's Muon: runs are compared across layouts, among them tp
        # and fsdp, which Muon does not train (tests/train/test_muon.py has its own). The
        # schedule is the test's own too, not the preset's.
        "optim": {"warmup_steps": 1, "lr": 1e-3, "min_lr": 2e-4, "optimizer": "adamw"},
        # Runs are compared across layouts and resumptions to 1e-5: fp32 on every host, not
        # the tiny preset's auto (bf16 on CPUs with AMX or AVX-512 BF16).
        "precision": "fp32",
        **fields,
    }
    path.write_text(yaml.safe_dump(config))
    return path


def geex_command(*args: str, nproc: int = 1) -> list[str]:
    if nproc == 1:
        return [sys.executable, "-m", "geex", *args]
    return [
        sys.executable, "-m", "torch.distributed.run", "--standalone",
        f"--nproc_per_node={nproc}", "-m", "geex", *args,
    ]  # fmt: skip


def run_geex(
    *args: str, nproc: int = 1, timeout: float = 300, check: bool = True
) -> subprocess.CompletedProcess:
    """Run geex; with ``check`` (the default) the test fails unless it exits 0."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    result = subprocess.run(
        geex_command(*args, nproc=nproc), capture_output=True, text=True, timeout=timeout, env=env
    )
    if check:
        assert result.returncode == 0, f"geex {' '.join(args)} failed:\n{result.stderr[-4000:]}"
    return result


def losses(run: Path) -> list[float]:
    return [r["loss"] for r in read_metrics(run / "metrics.jsonl")]


def grad_norms(run: Path) -> list[float]:
    return [r["grad_norm"] for r in read_metrics(run / "metrics.jsonl")]
