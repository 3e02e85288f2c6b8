"""`geex serve` itself, in a process of its own on a free loopback port, for the tests that
hold the command to what the clients see (the start line, the flags, every protocol)."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

START_LINE = re.compile(r" at (http://127\.0\.0\.1:\d+)/v1 ")
START_TIMEOUT_S = 120  # loading a model on a busy 2-core machine


@contextlib.contextmanager
def geex_serve(model: Path, *flags: str) -> Iterator[str]:
    """Run ``geex serve --model MODEL --port 0 FLAGS...`` on the CPU and yield its URL, read
    from its start line; the process is stopped by its id when the block ends."""
    command = [sys.executable, "-m", "geex", "serve", "--model", str(model), "--port", "0",
               "--device", "cpu", "--log-level", "warning", *flags]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != "GEEX_API_KEY"}  # only the flags count
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=env)
    log: list[str] = []
    started = threading.Event()
    url: list[str] = []

    def read_log() -> None:
        # Lines before the start line (a loader's progress bars) are kept for the message;
        # reading on after it means a full pipe never blocks the server.
        for line in process.stderr:
            log.append(line)
            match = START_LINE.search(line)
            if match and not url:
                url.append(match.group(1))
                started.set()
        started.set()  # the process ended

    threading.Thread(target=read_log, daemon=True).start()
    try:
        started.wait(timeout=START_TIMEOUT_S)
        if not url:
            raise AssertionError("geex serve did not start:\n" + "".join(log))
        yield url[0]
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=30)
