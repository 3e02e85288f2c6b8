"""A battery of hostile programs in every language (fork bomb, memory bomb, infinite loop,
huge output, writing outside its folder, a network connection, killing its parent) is
contained: nothing escapes, nothing is left running, and the harness keeps going.
Run: .venv/bin/python -m pytest tests/eval/test_hostile.py -q"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from geex.eval.evaluator import EvalConfig, Evaluator
from geex.eval.runners import RunSettings
from geex.eval.sandbox import _pids_of_uid

from .conftest import inline_sample
from .hostile_programs import ATTACKS, hostile
from .test_sandbox import living_children

LANGUAGES = ("python", "cpp", "java", "javascript", "go", "rust")
TIMEOUT = 3.0
ALLOWED = {
    "fork_bomb": {"timeout", "sandbox violation", "runtime error"},
    "memory_bomb": {"sandbox violation"},
    "infinite_loop": {"timeout"},
    # Node and Rust's test harness buffer the output, so it may never reach the cap.
    "huge_output": {"sandbox violation", "timeout"},
    "write_outside": {"sandbox violation"},
    "network": {"runtime error", "sandbox violation"},
    "kill_parent": {"passed", "runtime error", "failed", "sandbox violation"},
}


@pytest.fixture(scope="module")
def battery():
    outside = Path(tempfile.mkdtemp(prefix="geex-hostile-"))
    os.chmod(outside, 0o777)  # permissions would let anyone write here: only the sandbox stops it
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.settimeout(0.2)
    port = listener.getsockname()[1]
    canary = subprocess.Popen(["sleep", "120"])  # a process of ours the programs try to kill
    samples = [
        inline_sample(
            lang, task_id=f"Hostile-{lang}/{attack}", **hostile(lang, attack, str(outside), port)
        )
        for lang in LANGUAGES
        for attack in ATTACKS
    ]
    settings = RunSettings(timeout=TIMEOUT, memory_bytes=1 << 30)  # bombs hit the wall sooner
    config = EvalConfig(workers=2, settings=settings)
    start = time.monotonic()
    with Evaluator(config) as evaluator:
        results = {r.task_id: r for r in evaluator.judge(samples)}
        slot_users = [
            evaluator.sandbox.slot_uid(i, server=s) for i in range(2) for s in (False, True)
        ]
        mode = evaluator.sandbox.mode
    elapsed = time.monotonic() - start
    try:
        listener.accept()
        connected = True
    except TimeoutError:
        connected = False
    yield {
        "results": results, "outside": outside, "connected": connected, "canary": canary,
        "slot_users": slot_users, "mode": mode, "elapsed": elapsed,
    }  # fmt: skip
    canary.kill()
    canary.wait()
    listener.close()
    shutil.rmtree(outside)


@pytest.mark.parametrize("attack", ATTACKS)
@pytest.mark.parametrize("language", LANGUAGES)
def test_attack_is_contained(battery, language, attack):
    result = battery["results"][f"Hostile-{language}/{attack}"]
    assert result.verdict in ALLOWED[attack], (result.verdict, result.detail, result.stderr[-500:])
    assert result.seconds < TIMEOUT + 15


def test_nothing_escaped(battery):
    if battery["mode"] == "bwrap":
        assert list(battery["outside"].iterdir()) == []
    assert not battery["connected"] or battery["mode"] == "rlimits"
    assert battery["canary"].poll() is None  # our own process survived the kill attempts


def test_nothing_left_running(battery):
    time.sleep(0.5)
    assert living_children() == [battery["canary"].pid]
    for uid in battery["slot_users"]:
        if uid is not None:
            assert _pids_of_uid(uid, living=True) == []


def test_whole_battery_is_quick(battery):
    # 42 programs, several of which run into the time limit, on 2 workers.
    assert battery["elapsed"] < 240
