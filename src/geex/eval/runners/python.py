"""Python: ``program.py`` run by a Python that has the preamble's modules imported.

In bubblewrap mode each worker keeps a fork server (``python_forkserver``) that forks per
program; otherwise, and in the naive mode, each program gets its own ``python -B -s``.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import tempfile
import threading
from functools import cached_property
from pathlib import Path

from geex.eval.runners.base import Job, Runner
from geex.eval.runners.python_forkserver import ForkServer
from geex.eval.sandbox import Limits, RunOutcome
from geex.eval.verdicts import COMPILE_ERROR, SANDBOX_VIOLATION, Judgement

_SYNTAX = re.compile(r"^(SyntaxError|IndentationError|TabError): ", re.M)


def reachable_by_others(path: Path) -> bool:
    """Whether a user of its own (the sandbox user) may run ``path``: every folder on the way
    searchable and the file executable by others."""
    path = path.resolve()
    for folder in path.parents:
        if not os.stat(folder).st_mode & 0o001:
            return False
    return bool(os.stat(path).st_mode & 0o001)


class PythonRunner(Runner):
    key = "python"
    assertion = re.compile(r"AssertionError")

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._servers: dict[int, ForkServer] = {}

    @cached_property
    def interpreter(self) -> str | None:
        """``GEEX_EVAL_PYTHON``, else this Python when the sandbox user can run it, else the
        system's python3. HumanEval-X's preamble imports numpy, so it must have numpy."""
        override = os.environ.get("GEEX_EVAL_PYTHON")
        if override:
            return override
        candidates = [sys.executable, "/usr/bin/python3", shutil.which("python3")]
        if self.sandbox.drop_to_slot_users:
            candidates = [
                c for c in candidates if c and Path(c).exists() and reachable_by_others(Path(c))
            ]
        return candidates[0] if candidates else None

    def missing(self) -> str | None:
        if self.interpreter is None:
            return "no python3 the sandbox user may run: install the Debian package python3"
        return None

    def _prepare(self) -> None:
        with tempfile.TemporaryDirectory(prefix="geex-probe-") as probe:
            outcome = self.sandbox.run(
                [self.interpreter, "-c", "import numpy"], Path(probe), Limits(wall_seconds=30)
            )
        self._numpy_error = None
        if outcome.returncode != 0:
            self._numpy_error = (
                f"{self.interpreter} cannot import numpy, which HumanEval-X's preamble imports: "
                "install the Debian package python3-numpy (or set GEEX_EVAL_PYTHON)"
            )

    def note(self) -> str:
        return f"{self.interpreter}" + (f"; {self._numpy_error}" if self._numpy_error else "")

    def classify(self, outcome: RunOutcome) -> tuple[str, str]:
        # A script that does not parse stops before running, without a traceback header.
        if (
            _SYNTAX.search(outcome.stderr)
            and "Traceback (most recent call last)" not in outcome.stderr
        ):
            return COMPILE_ERROR, "does not parse"
        return super().classify(outcome)

    def judge(self, program: str, job: Job) -> Judgement:
        if self._numpy_error and "import numpy" in program:
            return self.unavailable(self._numpy_error)
        job.write("program.py", program)
        if self.settings.naive or self.sandbox.mode != "bwrap":
            return self.run_tests([self.interpreter, "-B", "-s", "program.py"], job)
        job.hand_over(job.server_uid)
        outcome = self._fork_server(job).run(job.workdir, self.settings.run_limits())
        verdict, detail = self.classify(outcome)
        if outcome.returncode is None and not outcome.timed_out:
            verdict, detail = SANDBOX_VIOLATION, "killed the test runner"
        return Judgement(verdict, detail, outcome.stdout, outcome.stderr, 0.0, outcome.seconds)

    def _fork_server(self, job: Job) -> ForkServer:
        key = threading.get_ident()
        with self._lock:
            server = self._servers.get(key)
            if server is None:
                slot = job.workdir.parent
                server = ForkServer(self.sandbox, self.interpreter, slot, job.server_uid)
                self._servers[key] = server
        return server

    def close(self) -> None:
        with self._lock:
            for server in self._servers.values():
                server.stop()
            self._servers.clear()
