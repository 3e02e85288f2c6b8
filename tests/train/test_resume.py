"""A run killed with SIGKILL and started again gives the uninterrupted run's loss curve exactly.

`pytest tests/train/test_resume.py`
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path

from tests.train.runs import geex_command, losses, run_geex, write_config


def wait_for(condition, timeout=240.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise TimeoutError("the run did not get there in time")


def logged_steps(run) -> int:
    path = run / "metrics.jsonl"
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_resume_after_sigkill_reproduces_the_loss_curve(byte_dataset, tmp_path):
    config = write_config(
        tmp_path / "config.yaml", byte_dataset, max_steps=12, checkpoint_every=4, eval_every=3
    )
    reference = tmp_path / "reference"
    run_geex("train", "--config", str(config), "--out", str(reference), "--no-progress")

    run = tmp_path / "run"
    args = ["train", "--config", str(config), "--out", str(run), "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(geex_command(*args), env=env, stderr=subprocess.DEVNULL)
    try:
        # Kill it as soon as its first checkpoint is complete: 8 steps are still to come.
        wait_for(lambda: (run / "checkpoints" / "step-00000004").is_dir(), timeout=240)
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.wait()
    assert logged_steps(run) < 12 and not (run / "model").exists()

    run_geex(*args)
    assert losses(run) == losses(reference)  # bit for bit: same data order, RNG, optimizer state
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == list(range(12))  # no step lost or logged twice
    val = [r["val_loss"] for r in records if "val_loss" in r]
    ref = [
        json.loads(x).get("val_loss")
        for x in (reference / "metrics.jsonl").read_text().splitlines()
    ]
    assert val == [v for v in ref if v is not None]


def test_sigterm_saves_a_checkpoint_and_the_rerun_finishes(byte_dataset, tmp_path):
    config = write_config(tmp_path / "config.yaml", byte_dataset, max_steps=500, checkpoint_every=0)
    run = tmp_path / "run"
    args = ["train", "--config", str(config), "--out", str(run), "--no-progress"]
    process = subprocess.Popen(geex_command(*args), stderr=subprocess.PIPE, text=True)
    wait_for(lambda: logged_steps(run) >= 2)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 3, stderr  # stopped early, checkpoint saved
    stopped = logged_steps(run)
    assert stopped < 500
    assert (run / "checkpoints" / f"step-{stopped:08d}").is_dir()
    run_geex(*args, "--max-steps", str(stopped + 2))
    assert logged_steps(run) == stopped + 2 and (run / "model" / "model.safetensors").is_file()


def _children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (from /proc: Linux only, as the runs are)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # it has ended meanwhile
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def test_a_process_killed_under_nproc_is_named_in_one_line(byte_dataset, tmp_path):
    """The OOM killer's SIGKILL leaves a worker no time to say anything: `--nproc` names it."""
    config = write_config(tmp_path / "config.yaml", byte_dataset, max_steps=500, checkpoint_every=0)
    run = tmp_path / "run"
    args = ["train", "--nproc", "1", "--config", str(config), "--out", str(run), "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}  # as run_geex
    process = subprocess.Popen(geex_command(*args), stderr=subprocess.PIPE, text=True, env=env)
    workers = []
    try:
        wait_for(lambda: logged_steps(run) >= 2)
        workers = _children(process.pid)
        assert workers, "no worker process under the launcher"
        for worker in workers:
            os.kill(worker, signal.SIGKILL)
        _, stderr = process.communicate(timeout=120)
    finally:
        for worker in [process.pid, *workers, *_children(process.pid)]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker, signal.SIGKILL)
        process.wait()
    assert process.returncode == 2, stderr
    assert "Traceback" not in stderr and len(stderr.strip().splitlines()) == 1, stderr
    assert "process 0 of 1 died" in stderr and "SIGKILL" in stderr, stderr
