"""Python: ``program.py`` run by a Python that has the preamble's modules imported.

In bubblewrap mode each worker keeps a fork server (``python_forkserver``) that forks per
program; otherwise, and in the naive mode, each program gets its own ``python -B -s``.
Packages a benchmark needs beyond the interpreter's (``geex eval prepare --pip``) are
installed with its pip into the cache's ``python-packages`` folder and put on PYTHONPATH; where
the sandbox user may not enter the cache (root's home), the programs get a copy made once per
run.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path

from geex.errors import GeexError
from geex.eval.runners.base import Job, Runner
from geex.eval.runners.python_forkserver import ForkServer
from geex.eval.sandbox import Limits, RunOutcome
from geex.eval.verdicts import COMPILE_ERROR, SANDBOX_VIOLATION, Judgement

_NO_NUMPY = re.compile(r"(ModuleNotFoundError|ImportError).*numpy")
_SYNTAX = re.compile(r"^(SyntaxError|IndentationError|TabError): ", re.M)


def reachable_by_others(path: Path) -> bool:
    """Whether a user of its own (the sandbox user) may run ``path``: every folder on the way
    searchable and the file executable by others."""
    path = path.resolve()
    for folder in path.parents:
        if not os.stat(folder).st_mode & 0o001:
            return False
    return bool(os.stat(path).st_mode & 0o001)


def readable_by_others(folder: Path) -> bool:
    """Whether another user may list and read ``folder``: every folder on the way searchable."""
    folder = folder.resolve()
    if any(not os.stat(parent).st_mode & 0o001 for parent in folder.parents):
        return False
    return os.stat(folder).st_mode & 0o005 == 0o005


class PythonRunner(Runner):
    key = "python"
    assertion = re.compile(r"AssertionError")

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._servers: dict[int, ForkServer] = {}
        self._packages_env: dict[str, str] | None = None
        self._packages_copy: Path | None = None
        self._packages_lock = threading.Lock()  # taken inside ``self._lock`` too
        self._importable: dict[str, bool] = {}  # top module -> whether the programs can import it

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

    @property
    def packages_dir(self) -> Path:
        return self.cache_dir / "python-packages"

    def install_pip_packages(self, specs: Sequence[str]) -> Path:
        """Install pip packages with the judging interpreter's pip into ``packages_dir``."""
        if self.interpreter is None:
            raise GeexError(self.missing())
        self.packages_dir.mkdir(parents=True, exist_ok=True)
        argv = [self.interpreter, "-m", "pip", "install", "--target", str(self.packages_dir),
                "--upgrade", "--no-input", "--disable-pip-version-check", *specs]  # fmt: skip
        done = subprocess.run(argv, capture_output=True, text=True)
        if "No module named pip" in done.stderr:
            raise GeexError(
                f"{self.interpreter} (the Python that runs the programs) has no pip: install "
                "the Debian package python3-pip, or set GEEX_EVAL_PYTHON to a Python with pip"
            )
        if done.returncode != 0:
            raise GeexError(f"pip install {' '.join(specs)} failed: {done.stderr.strip()[-500:]}")
        return self.packages_dir

    def packages_env(self) -> dict[str, str]:
        """PYTHONPATH for the installed packages, as the sandbox user can read them."""
        with self._packages_lock:
            if self._packages_env is None:
                self._packages_env = self._readable_packages()
            return self._packages_env

    def _readable_packages(self) -> dict[str, str]:
        if not self.packages_dir.is_dir():
            return {}
        folder = self.packages_dir
        if self.sandbox.drop_to_slot_users and not readable_by_others(folder):
            # The cache sits in the harness's home, which the sandbox user may not enter:
            # the programs read a copy, made once per run.
            self._packages_copy = Path(tempfile.mkdtemp(prefix="geex-python-packages-"))
            os.chmod(self._packages_copy, 0o755)
            folder = self._packages_copy / "site"
            shutil.copytree(self.packages_dir, folder, symlinks=True)
        return {"PYTHONPATH": str(folder)}

    def _prepare(self) -> None:
        with tempfile.TemporaryDirectory(prefix="geex-probe-") as probe:
            outcome = self.sandbox.run(
                [self.interpreter, "-c", "import numpy"], Path(probe), Limits(wall_seconds=30),
                env=self.packages_env(),
            )  # fmt: skip
        self._numpy_error = None
        if outcome.returncode != 0 and not _NO_NUMPY.search(outcome.output):
            said = " ".join(outcome.output.split())[:300]
            raise GeexError(
                f"the sandbox could not run {self.interpreter} -c 'import numpy' "
                f"(exit status {outcome.returncode}): {said}"
            )
        if outcome.returncode != 0:
            self._numpy_error = (
                f"{self.interpreter} cannot import numpy, which HumanEval-X's preamble imports: "
                "install the Debian package python3-numpy or run `geex eval prepare --pip numpy` "
                "(or set GEEX_EVAL_PYTHON)"
            )

    def lacks_library(self, name: str) -> bool:
        """Whether the judging interpreter, on the programs' PYTHONPATH, cannot import the top
        module of ``name``: with it there, a missing submodule is the program's mistake."""
        top = name.split(".")[0]
        with self._packages_lock:
            known = self._importable.get(top)
        if known is None:
            probe = (
                f"import importlib.util, sys; sys.exit(importlib.util.find_spec({top!r}) is None)"
            )
            with tempfile.TemporaryDirectory(prefix="geex-probe-") as folder:
                done = subprocess.run(
                    [self.interpreter, "-B", "-s", "-c", probe], cwd=folder,
                    env={"PATH": os.environ.get("PATH", ""), **self.packages_env()},
                    capture_output=True, timeout=60,
                )  # fmt: skip
            known = done.returncode == 0
            with self._packages_lock:
                self._importable[top] = known
        return not known

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
            return self.unavailable(self._numpy_error, "numpy", "geex eval prepare --pip numpy")
        job.write("program.py", program)
        if self.settings.naive or self.sandbox.mode != "bwrap":
            argv = [self.interpreter, "-B", "-s", "program.py"]
            return self.run_tests(argv, job, env=self.packages_env())
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
                server = ForkServer(
                    self.sandbox, self.interpreter, slot, job.server_uid, self.packages_env()
                )
                self._servers[key] = server
        return server

    def close(self) -> None:
        with self._lock:
            for server in self._servers.values():
                server.stop()
            self._servers.clear()
            with self._packages_lock:  # a later use reads the packages folder again
                if self._packages_copy is not None:
                    shutil.rmtree(self._packages_copy, ignore_errors=True)
                    self._packages_copy = None
                self._packages_env = None
