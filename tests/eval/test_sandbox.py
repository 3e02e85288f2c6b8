"""The sandbox holds a program to its folder, its limits and no network, kills everything it
started, and says so when it has to fall back to a weaker mode.
Run: .venv/bin/python -m pytest tests/eval/test_sandbox.py -q"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import tempfile
from functools import partial
from pathlib import Path

import pytest

from geex.eval.evaluator import EvalConfig, Evaluator
from geex.eval.sandbox import Limits, Sandbox, _pids_of_uid
from tests.conftest import finishes_within, missing, settles

from .conftest import inline_sample


def working_sandbox(mode: str) -> Sandbox:
    """A sandbox of ``mode`` that can run a program here. CI installs bubblewrap and allows
    the namespaces every mode needs, so there a mode that cannot run is a failure."""
    sandbox = Sandbox(mode)
    if not sandbox.probe():
        missing(f"sandbox mode {mode!r} cannot run here (install bubblewrap, util-linux)")
    return sandbox


@pytest.fixture
def bwrap() -> Sandbox:
    return working_sandbox("bwrap")


# Python's own helper processes, which live as long as the process that started them: the
# multiprocessing resource tracker that torch.multiprocessing.spawn starts (tests/train).
PYTHON_HELPERS = ("multiprocessing.resource_tracker", "multiprocessing.forkserver")


def living_children() -> list[int]:
    """Our child processes that are still alive (zombies and Python's helpers excluded)."""
    me = os.getpid()
    children = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rpartition(")")[2].split()
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    command = f.read().decode("utf-8", "replace")
            except OSError:
                continue
            helper = any(name in command for name in PYTHON_HELPERS)
            if int(fields[1]) == me and fields[0] != "Z" and not helper:
                children.append(int(entry))
    return children


@pytest.fixture
def outside():
    """A folder anyone may write to, beside the job's (pytest's tmp_path is private to us,
    which a sandbox user could not even enter)."""
    folder = Path(tempfile.mkdtemp(prefix="geex-test-"))
    os.chmod(folder, 0o777)
    yield folder
    shutil.rmtree(folder)


@pytest.fixture
def workdir(outside):
    folder = outside / "job"
    folder.mkdir()
    return folder


def run(sandbox: Sandbox, workdir: Path, script: str, **limits):
    uid = sandbox.slot_uid(7)
    if uid is not None:
        os.chown(workdir, uid, uid)
    return sandbox.run(
        ["/bin/bash", "-c", script], workdir, Limits(**{"wall_seconds": 5, **limits}), uid=uid
    )


def assert_nothing_left(sandbox: Sandbox):
    settles(living_children, [], "child processes left")
    uid = sandbox.slot_uid(7)
    if uid is not None:
        settles(partial(_pids_of_uid, uid, living=True), [], f"processes of sandbox user {uid}")


def test_only_its_folder_is_writable(bwrap, workdir, outside):
    target = outside / "outside.txt"  # its folder is world-writable: only the sandbox stops it
    out = run(bwrap, workdir, f"echo hi > mine.txt; echo bad > {target}; touch /dev/x /tmp/x")
    assert (workdir / "mine.txt").read_text() == "hi\n"
    assert not target.exists()
    assert out.stderr.count("Read-only file system") == 3


def test_no_network(bwrap, workdir):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(0.5)
    port = server.getsockname()[1]
    out = run(bwrap, workdir, f"echo hi > /dev/tcp/127.0.0.1/{port} && echo connected")
    assert "connected" not in out.stdout
    with pytest.raises(TimeoutError):
        server.accept()
    server.close()


@pytest.mark.parametrize("mode", ["bwrap", "unshare", "rlimits"])
def test_timeout_kills_the_program_and_its_children(mode, workdir):
    """Children that would outlive any test, one in a session of its own, holding the output
    pipes: the run still ends at its limit and leaves none of them behind."""
    sandbox = working_sandbox(mode)
    script = "sleep infinity & (setsid sleep infinity &) ; while :; do :; done"
    out = finishes_within(
        60, lambda: run(sandbox, workdir, script, wall_seconds=1.5), f"a timed-out run in {mode}"
    )
    assert out.timed_out
    assert_nothing_left(sandbox)


@pytest.mark.parametrize("mode", ["bwrap", "rlimits"])
def test_output_limit(mode, workdir):
    sandbox = working_sandbox(mode)
    out = run(sandbox, workdir, "yes", output_bytes=100_000)
    assert out.output_exceeded and not out.timed_out
    assert len(out.stdout) <= 100_000
    assert_nothing_left(sandbox)


def test_file_size_and_process_limits(bwrap, workdir):
    sandbox = bwrap
    out = run(sandbox, workdir, "head -c 10000000 /dev/zero > big", file_bytes=1_000_000)
    assert out.signal == 25  # SIGXFSZ
    assert (workdir / "big").stat().st_size <= 1_000_000
    out = run(
        sandbox,
        workdir,
        "for i in $(seq 50); do sleep 5 & done; wait",
        processes=20,
        wall_seconds=3,
    )
    assert "fork" in out.stderr or "Resource temporarily unavailable" in out.stderr
    assert_nothing_left(sandbox)


def test_forced_weaker_mode_is_recorded_and_warned(monkeypatch, caplog):
    monkeypatch.setenv("GEEX_SANDBOX", "rlimits")
    sandbox = Sandbox.detect()
    assert (
        sandbox.mode == "rlimits"
        and "no file-system, network or process isolation" in sandbox.warning
    )
    sample = inline_sample("python", "assert 1 + 1 == 2\n")
    with caplog.at_level(logging.WARNING), Evaluator(EvalConfig(workers=1), sandbox) as ev:
        (result,) = ev.judge([sample])
    assert result.verdict == "passed" and result.sandbox == "rlimits"
    assert "sandbox mode 'rlimits'" in caplog.text


def test_unknown_forced_mode_is_an_error(monkeypatch):
    from geex.errors import GeexError

    monkeypatch.setenv("GEEX_SANDBOX", "docker")
    with pytest.raises(GeexError, match="choose one of"):
        Sandbox.detect()


def test_detect_prefers_bubblewrap(bwrap, monkeypatch):
    monkeypatch.delenv("GEEX_SANDBOX", raising=False)
    sandbox = Sandbox.detect()
    assert sandbox.mode == "bwrap" and sandbox.warning is None
