"""A `geex data` run killed with SIGKILL and started again ends with the uninterrupted run's shards, manifest and card. `pytest tests/data/test_resume.py`"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.data.trees import write_code_tree

OPTIONS = [
    "--tasks",
    "3",
    "--workers",
    "1",
    "--vocab-size",
    "600",
    "--validation-fraction",
    "0.1",
]


def geex_data(source: Path, out: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "geex.cli", "data", str(source), "--out", str(out), *OPTIONS]
    return subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )


def outputs(out: Path) -> dict[str, bytes]:
    files = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file() and p.name != "card.json"}
    card = json.loads((out / "card.json").read_text())
    del card["stage_time_s"]
    files["card.json"] = json.dumps(card, sort_keys=True).encode()
    return files


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    return write_code_tree(tmp_path_factory.mktemp("src") / "code", n_python=400, n_c=100)


@pytest.fixture(scope="module")
def reference(source, tmp_path_factory) -> dict[str, bytes]:
    out = tmp_path_factory.mktemp("ref") / "data"
    run = geex_data(source, out)
    assert run.wait(timeout=300) == 0, run.stderr.read().decode()
    return outputs(out)


@pytest.mark.parametrize("stage", ["clean", "pack"])
def test_killed_in_a_stage_and_started_again_gives_the_same_output(
    stage, source, reference, tmp_path
):
    out = tmp_path / "data"
    run = geex_data(source, out)
    marker = out / "work" / "logs" / stage / "completions" / "00000"
    deadline = time.monotonic() + 300
    while not marker.exists() and run.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert run.poll() is None, "the run ended before it could be killed"
    os.killpg(run.pid, signal.SIGKILL)
    run.wait()
    assert not (out / "dataset.json").exists()
    finished_before = marker.stat().st_mtime_ns
    again = geex_data(source, out)
    assert again.wait(timeout=300) == 0, again.stderr.read().decode()
    assert outputs(out) == reference
    assert marker.stat().st_mtime_ns == finished_before  # the finished task was not run again
