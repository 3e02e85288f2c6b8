"""What every language runner shares: settings, the job folder, compile and run steps."""

from __future__ import annotations

import os
import re
import shutil
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import ClassVar

from geex.config import option
from geex.errors import ConfigError
from geex.eval.sandbox import Limits, RunOutcome, Sandbox
from geex.eval.verdicts import UNAVAILABLE, Judgement, classify_run, compile_failure

MAX_TIMEOUT_S = 86_400.0


def check_timeout(seconds: float, name: str) -> None:
    """A judging time limit: a day is far past any test, and NaN or inf would reach the
    sandbox's integer limits."""
    if not 0 < seconds <= MAX_TIMEOUT_S:
        raise ConfigError(
            f"{name} must be seconds > 0 and at most {MAX_TIMEOUT_S:g}, got {seconds!r}"
        )


@dataclass(frozen=True)
class RunSettings:
    """Limits for judging; ``naive`` runs the reference harness's way (cold, one process per
    step, no caches shared between samples) for comparison."""

    # wall-clock seconds for the tests of one program
    timeout: float = option(10.0, help="seconds for one program's tests")
    # Benchmarks and tests set these; `geex eval` keeps the defaults.
    compile_timeout: float = option(60.0, flag=False)
    memory_bytes: int = option(2 << 30, flag=False)
    processes: int = option(256, flag=False)
    naive: bool = option(False, flag=False)

    def __post_init__(self) -> None:
        check_timeout(self.timeout, "timeout")
        check_timeout(self.compile_timeout, "compile_timeout")

    def run_limits(self, **overrides) -> Limits:
        limits = Limits(
            wall_seconds=self.timeout, memory_bytes=self.memory_bytes, processes=self.processes
        )
        return replace(limits, **overrides)

    def compile_limits(self, **overrides) -> Limits:
        # Compilers are trusted code, but a program can still make one blow up (templates,
        # huge constants); they get more room than the program itself.
        limits = Limits(
            wall_seconds=self.compile_timeout,
            memory_bytes=max(self.memory_bytes, 4 << 30),
            processes=None,
            file_bytes=1 << 30,
            open_files=4096,
            output_bytes=256 << 10,
        )
        return replace(limits, **overrides)


@dataclass
class Job:
    """One program's folder and who runs it."""

    workdir: Path
    uid: int | None  # the sandbox user of the run step (None: the harness's own user)
    server_uid: int | None = None  # the user of the slot's long-lived sandboxes

    def write(self, name: str, text: str) -> Path:
        path = self.workdir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return path

    def hand_over(self, uid: int | None = None) -> None:
        """Give the folder to the sandbox user (``uid``, default the run step's) before its
        program runs."""
        uid = self.uid if uid is None else uid
        if uid is None:
            return
        for root, dirs, files in os.walk(self.workdir):
            for name in (*dirs, *files):
                os.lchown(os.path.join(root, name), uid, uid)
        os.chown(self.workdir, uid, uid)


class Runner:
    """Compiles (where needed) and runs one language's programs in the sandbox.

    Subclasses set ``key`` (the language key), ``tools`` (program -> Debian package) and
    ``assertion`` (how the language reports a failed test), and implement ``judge``.
    """

    key = ""
    tools: ClassVar[Mapping[str, str]] = {}
    assertion = re.compile(r"(?!)")
    batch_size = 1  # how many programs ``judge_batch`` takes at once

    def __init__(self, sandbox: Sandbox, cache_dir: Path, settings: RunSettings) -> None:
        self.sandbox = sandbox
        self.cache_dir = Path(cache_dir)
        self.settings = settings
        self._prepared = False
        self._lock = threading.Lock()

    def missing(self) -> str | None:
        """Why this language cannot be judged here (naming what to install), or None."""
        absent = [tool for tool in self.tools if shutil.which(tool) is None]
        if not absent:
            return None
        packages = sorted({self.tools[tool] for tool in absent})
        return (
            f"{', '.join(absent)} not found: install the Debian package"
            f"{'s' if len(packages) > 1 else ''} {' '.join(packages)}"
        )

    def prepare(self) -> None:
        """Warm this language's caches once (thread-safe); later calls return at once."""
        with self._lock:
            if not self._prepared:
                self.cache_dir.mkdir(parents=True, exist_ok=True)
                self._prepare()
                self._prepared = True

    def _prepare(self) -> None:
        pass

    def note(self) -> str:
        """A word on how this language is judged here (after ``prepare``)."""
        return ""

    def lacks_library(self, name: str) -> bool:
        """Whether this machine lacks the library behind ``name``, a name the toolchain said
        it could not find. Runners that can look (a folder, a linked crate, an importable
        module) say no where the library is there and only the path under it is wrong, which
        is then the program's mistake; the others take the toolchain's word."""
        return True

    def judge(self, program: str, job: Job) -> Judgement:
        raise NotImplementedError

    def judge_batch(self, programs: Sequence[str], jobs: Sequence[Job]) -> list[Judgement]:
        return [self.judge(program, job) for program, job in zip(programs, jobs, strict=True)]

    def close(self) -> None:
        pass

    # Steps shared by the runners.

    def compile(
        self,
        argv: Sequence[str],
        job: Job,
        *,
        env: Mapping[str, str] | None = None,
        writable: Sequence[Path] = (),
    ) -> RunOutcome:
        return self.sandbox.run(
            argv, job.workdir, self.settings.compile_limits(), env=env, writable=writable
        )

    def run_tests(
        self,
        argv: Sequence[str],
        job: Job,
        *,
        env: Mapping[str, str] | None = None,
        limits: Limits | None = None,
        compile_seconds: float = 0.0,
    ) -> Judgement:
        job.hand_over()
        outcome = self.sandbox.run(
            argv, job.workdir, limits or self.settings.run_limits(), uid=job.uid, env=env
        )
        verdict, detail = self.classify(outcome)
        return Judgement(
            verdict,
            detail,
            stdout=outcome.stdout,
            stderr=outcome.stderr,
            compile_seconds=compile_seconds,
            run_seconds=outcome.seconds,
        )

    def classify(self, outcome: RunOutcome) -> tuple[str, str]:
        return classify_run(outcome, assertion=self.assertion)

    @staticmethod
    def compile_failed(outcome: RunOutcome) -> Judgement:
        return compile_failure(outcome)

    @staticmethod
    def unavailable(reason: str, package: str = "", install: str = "") -> Judgement:
        """Not judged here; ``package`` and ``install``: the missing package, and how to
        install it, which the summary lists."""
        return Judgement(UNAVAILABLE, reason, missing_package=package, install=install)
