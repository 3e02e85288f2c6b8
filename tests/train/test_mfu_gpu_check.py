"""benchmarks/gpu.sh runs end to end on the CPU (--cpu-smoke: train, decode, evaluate, one
table), and without a GPU says so in one line and exits 0.
`pytest tests/train/test_mfu_gpu_check.py`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

GPU_SH = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu.sh"


def gpu_sh(*args: str, work: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": sys.executable, "GPU_CHECK_WORK": str(work)}
    return subprocess.run(
        ["bash", str(GPU_SH), *args], capture_output=True, text=True, env=env, timeout=900
    )


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU: gpu.sh would run")
def test_without_a_gpu_it_says_so_in_one_line_and_exits_0(tmp_path):
    result = gpu_sh(work=tmp_path / "work")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines() == [
        "gpu.sh: no CUDA GPU on this machine; nothing measured (benchmarks/gpu.sh --cpu-smoke "
        "checks the script on the CPU)"
    ]
    assert not (tmp_path / "work").exists()


def test_an_unknown_option_is_refused(tmp_path):
    result = gpu_sh("--fast", work=tmp_path)
    assert result.returncode == 2 and "usage: benchmarks/gpu.sh [--cpu-smoke]" in result.stderr


@pytest.mark.slow
def test_the_cpu_smoke_trains_decodes_and_evaluates_into_one_table(tmp_path):
    result = gpu_sh("--cpu-smoke", work=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Geex GPU check: CPU (smoke: figures meaningless)" in result.stdout
    rows = json.loads((tmp_path / "gpu-check.json").read_text())["rows"]
    assert [row[0] for row in rows] == ["train tiny", "decode tiny", "eval embedded"]
    train, decode, evaluation = rows
    assert float(train[2].split()[0].replace(",", "")) > 0  # tokens/s
    assert train[3] == "unknown (no peak for this device)"  # a CPU has no peak in the table
    assert float(decode[2].split()[0].replace(",", "")) > 0
    assert evaluation[4].startswith("2 problems generated and judged")
