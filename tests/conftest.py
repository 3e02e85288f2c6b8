"""Shared fixtures; the one rule for what a test lacks (skipped here, a failure in CI); and the
guards that turn a hang or a state that never comes into a failure, without timing a test."""

from __future__ import annotations

import importlib
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import NoReturn, TypeVar

import pytest
import torch

# Tests check correctness on small tensors, where one thread is as fast as two and is not
# slowed a hundredfold by OpenMP spin-waits when the machine is busy. Child processes
# (torchrun, `geex` subprocesses) inherit the setting.
os.environ.setdefault("OMP_NUM_THREADS", "1")
torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
CI_TRUTHY = {"true", "1", "yes"}
T = TypeVar("T")


def free_port() -> int:
    """A TCP port free on the loopback now (a rendezvous, or an address nothing listens on)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def in_ci() -> bool:
    """Whether the CI environment variable is set the way CI systems set it."""
    return os.environ.get("CI", "").strip().lower() in CI_TRUTHY


def missing(reason: str) -> NoReturn:
    """Skip the test for lack of something, or fail it in CI.

    CI runs `scripts/setup.sh --dev` and has ../shared beside the repository, so there a
    missing prerequisite means the setup is broken: a skip would hide the tests it silences.
    Only what CI provides goes through here; optional extras it never installs stay plain skips.
    """
    if in_ci():
        pytest.fail(f"{reason} (CI must provide it)", pytrace=False)
    pytest.skip(reason, allow_module_level=True)


def shared_path(*parts: str) -> Path:
    """A path under ../shared, or `missing` with the reason when it is not there."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        missing(f"reference data not found at {path} (the ../shared folder beside the repo)")
    return path


def required_module(name: str) -> ModuleType:
    """A module that `scripts/setup.sh --dev` installs, or `missing` when it cannot be imported."""
    try:
        return importlib.import_module(name)
    except ImportError as error:
        missing(f"needs the Python module {name!r} (scripts/setup.sh --dev installs it): {error}")


def required_program(*names: str, package: str) -> str:
    """The first of ``names`` on PATH, or `missing` naming the Debian ``package`` to install."""
    found = next((name for name in names if shutil.which(name)), None)
    if found is None:
        missing(f"needs {' or '.join(names)} on PATH: install the Debian package {package}")
    return found


def finishes_within(seconds: float, work: Callable[[], T], what: str) -> T:
    """``work()``'s result, or a test failure when it is still running after ``seconds``.

    A guard against hangs, not a speed check: ``seconds`` sits far above what a loaded machine
    needs, so only work that would never end reaches it. The hung work is left behind in a
    daemon thread; the failure says what hung instead of the suite stalling.
    """
    outcome: dict[str, object] = {}

    def run() -> None:
        try:
            outcome["result"] = work()
        except BaseException as error:  # re-raised in the test's thread
            outcome["error"] = error

    thread = threading.Thread(target=run, name=f"guarded: {what}", daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        pytest.fail(f"{what} still running after {seconds:g} s: it hangs", pytrace=False)
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]


def settles(probe: Callable[[], T], expected: T, what: str, seconds: float = 60.0) -> None:
    """Poll ``probe()`` until it returns ``expected``, or fail with the last value seen.

    For states that come soon but not at once, such as a killed process leaving the process
    table: a fixed sleep before the check loses that race on a busy machine. ``seconds`` is a
    guard far above what such a machine needs, not a speed check.
    """
    deadline = time.monotonic() + seconds
    while (seen := probe()) != expected:
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: {seen!r} after {seconds:g} s, expected {expected!r}")
        time.sleep(0.05)


@pytest.fixture
def codegeex_tokenizer_dir() -> Path:
    return shared_path("data", "codegeex-tokenizer")


@pytest.fixture
def humanevalx_dir() -> Path:
    return shared_path("data", "humaneval-x")


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
