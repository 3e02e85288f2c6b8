"""One runner per HumanEval-X language: how its programs are compiled, run and judged."""

from __future__ import annotations

from geex.eval.runners.base import Job, Runner, RunSettings
from geex.eval.runners.cpp import CppRunner
from geex.eval.runners.go import GoRunner
from geex.eval.runners.java import JavaRunner
from geex.eval.runners.javascript import JavaScriptRunner
from geex.eval.runners.python import PythonRunner
from geex.eval.runners.rust import RustRunner

# Language key (geex.languages) -> runner class.
RUNNERS: dict[str, type[Runner]] = {
    runner.key: runner
    for runner in (PythonRunner, CppRunner, JavaRunner, JavaScriptRunner, GoRunner, RustRunner)
}

__all__ = ["RUNNERS", "Job", "RunSettings", "Runner"]
