"""The seven verdicts and how a finished run maps to one.

- ``passed``: the tests ran and succeeded.
- ``failed``: the tests ran and an assertion failed (a wrong answer).
- ``timeout``: the wall-clock or CPU-time limit ran out.
- ``compile error``: the program did not compile (or its compiler gave up).
- ``runtime error``: the program crashed in another way (exception, signal, panic).
- ``sandbox violation``: the program hit a wall of the sandbox: the memory, process, file-size
  or output limit, the read-only file system, or the missing network.
- ``unavailable``: it could not be judged here: a toolchain or library is missing. Such
  samples are left out of pass@k: the machine, not the model, failed them.
"""

from __future__ import annotations

import re
import signal
from dataclasses import dataclass, replace

from geex.eval.sandbox import RunOutcome

PASSED = "passed"
FAILED = "failed"
TIMEOUT = "timeout"
COMPILE_ERROR = "compile error"
RUNTIME_ERROR = "runtime error"
SANDBOX_VIOLATION = "sandbox violation"
UNAVAILABLE = "unavailable"
VERDICTS = (PASSED, FAILED, TIMEOUT, COMPILE_ERROR, RUNTIME_ERROR, SANDBOX_VIOLATION, UNAVAILABLE)

# What programs print when a sandbox wall stops them, in each runtime's words (Go writes
# errno texts in lower case). Checked only for runs that did not pass.
_WALLS = tuple((name, re.compile(pattern, re.I)) for name, pattern in (
    ("memory limit",
     r"MemoryError|std::bad_alloc|OutOfMemoryError|out of memory|Cannot allocate memory|"
     r"memory allocation of \d+ bytes failed|heap limit|allocation failed|ENOMEM"),
    ("process limit",
     r"Resource temporarily unavailable|unable to create native thread|EAGAIN|fork: retry|"
     r"cannot fork"),
    ("read-only file system", r"Read-only file system|EROFS|Permission denied|EACCES"),
    ("no network",
     r"Network is unreachable|ENETUNREACH|Temporary failure in name resolution|EAI_AGAIN|"
     r"Name or service not known|\bENOTFOUND\b|No address associated"),
    ("file-size limit", r"File size limit exceeded|EFBIG|File too large"),
))  # fmt: skip


@dataclass(frozen=True)
class Judgement:
    """A verdict with a short reason (``detail``) and the run's evidence."""

    verdict: str
    detail: str = ""
    stdout: str = ""
    stderr: str = ""
    compile_seconds: float = 0.0
    run_seconds: float = 0.0
    missing_package: str = ""  # "unavailable" for want of a library: the package that has it
    install: str = ""  # and the command (or sentence) that installs it


@dataclass(frozen=True)
class MissingLibrary:
    """A library the benchmark needs and this machine lacks."""

    name: str  # as the toolchain names it: "lodash", "boost/any.hpp", "numpy"
    package: str  # what provides it: an npm, pip or Debian package
    install: str  # the command that installs it, or a sentence where none is known

    @property
    def is_command(self) -> bool:
        return self.install.startswith(("geex ", "apt-get "))

    @property
    def detail(self) -> str:
        """What is missing and what to do: a command in backticks, a sentence as it is."""
        what = self.name if self.package in ("", self.name) else f"{self.name} ({self.package})"
        todo = f"run `{self.install}`" if self.is_command else self.install
        return f"{what} is not installed here: {todo}"

    def verdict(self, evidence: Judgement | None = None) -> Judgement:
        """The "unavailable" verdict naming this library, keeping ``evidence``'s output."""
        return replace(
            evidence or Judgement(UNAVAILABLE),
            verdict=UNAVAILABLE,
            detail=self.detail,
            missing_package=self.package or self.name,
            install=self.install,
        )


def sandbox_wall(outcome: RunOutcome) -> str | None:
    """Which sandbox wall stopped a failed run, or None when none did."""
    if outcome.output_exceeded:
        return "output limit"
    sig = outcome.signal
    if sig == signal.SIGXFSZ:
        return "file-size limit"
    text = outcome.output
    for name, pattern in _WALLS:
        if pattern.search(text):
            return name
    return None


def classify_run(outcome: RunOutcome, *, assertion: re.Pattern[str]) -> tuple[str, str]:
    """(verdict, detail) of a test run that exited with ``outcome``.

    ``assertion`` matches the language's own words for a failed test; a run that failed
    without them crashed (runtime error) or hit a sandbox wall.
    """
    if outcome.timed_out:
        return TIMEOUT, f"no result within {outcome.seconds:.1f} s"
    if outcome.signal == signal.SIGXCPU:
        return TIMEOUT, "CPU time limit"
    if outcome.returncode is None:
        return RUNTIME_ERROR, outcome.stderr.strip()[:200] or "did not start"
    wall = sandbox_wall(outcome)
    if outcome.returncode == 0 and wall != "output limit":
        return PASSED, ""
    if wall is not None:
        return SANDBOX_VIOLATION, wall
    if assertion.search(outcome.output):
        return FAILED, "assertion failed"
    sig = outcome.signal
    if sig is not None:
        name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else str(sig)
        return RUNTIME_ERROR, f"killed by {name}"
    return RUNTIME_ERROR, f"exit status {outcome.returncode}"


def compile_failure(outcome: RunOutcome) -> Judgement:
    """The verdict for a compiler run that did not succeed."""
    if outcome.timed_out:
        detail = f"the compiler ran past {outcome.seconds:.0f} s"
    elif outcome.output_exceeded:
        detail = "the compiler's output passed the limit"
    else:
        detail = "did not compile"
    return Judgement(COMPILE_ERROR, detail, stdout=outcome.stdout, stderr=outcome.stderr,
                     compile_seconds=outcome.seconds)  # fmt: skip
