"""Go: ``go test`` offline in GOPATH mode with Debian's testify, then the test binary.

Each program is a ``package main`` test file. It is built like ``go test`` builds it, vet
checks included (a vet finding fails the program, as in the reference harness), with
``-exec`` pointing at a script that keeps the test binary instead of running it; the binary
then runs in the sandbox as the sandbox user. Speed: up to ``batch_size`` programs are built
by one ``go test`` call, as separate packages of a GOPATH tree, so that the go command's
start-up and package loading are paid once and its builds run in parallel; the build cache
(GOCACHE) persists between runs.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

from geex.eval.runners.base import Job, Runner
from geex.eval.sandbox import RunOutcome
from geex.eval.verdicts import COMPILE_ERROR, FAILED, RUNTIME_ERROR, Judgement, classify_run

DEBIAN_GOPATH = Path("/usr/share/gocode")
TESTIFY = DEBIAN_GOPATH / "src/github.com/stretchr/testify"
_KEEP_BINARY = (
    '#!/bin/sh\n# go test -exec: keep the test binary instead of running it.\ncp "$1" ./main.test\n'
)
_SECTION = re.compile(r"^# (\S+)", re.M)


class GoRunner(Runner):
    key = "go"
    tools: ClassVar[dict[str, str]] = {"go": "golang-go"}
    assertion = re.compile(r"^--- FAIL", re.M)

    @property
    def batch_size(self) -> int:
        return 1 if self.settings.naive else 16

    def _prepare(self) -> None:
        (self.cache_dir / "go-build").mkdir(parents=True, exist_ok=True)
        script = self.cache_dir / "keep-test-binary.sh"
        if not script.exists() or script.read_text() != _KEEP_BINARY:
            script.write_text(_KEEP_BINARY)
            script.chmod(0o755)

    def _env(self, gopath: Path) -> dict[str, str]:
        return {
            "GO111MODULE": "off",
            "GOPATH": f"{DEBIAN_GOPATH}:{gopath}",
            "GOCACHE": str(self.cache_dir / "go-build"),
            "GOFLAGS": "",
            "GOPROXY": "off",
            "GOTOOLCHAIN": "local",
            "GOTELEMETRY": "off",
            "CGO_ENABLED": "0",
        }

    def judge(self, program: str, job: Job) -> Judgement:
        return self.judge_batch([program], [job])[0]

    def judge_batch(self, programs: Sequence[str], jobs: Sequence[Job]) -> list[Judgement]:
        results: list[Judgement | None] = [None] * len(programs)
        gopath = jobs[0].workdir / "gopath"
        packages = {}
        for i, program in enumerate(programs):
            if "github.com/stretchr/testify" in program and not TESTIFY.is_dir():
                package = "golang-github-stretchr-testify-dev"
                results[i] = self.unavailable(
                    f"testify not found: install the Debian package {package}",
                    package,
                    f"apt-get install {package}",
                )
                continue
            name = f"p{i}"
            folder = gopath / "src" / name
            folder.mkdir(parents=True)
            (folder / "main_test.go").write_text(program, encoding="utf-8")
            packages[name] = i
        if packages:
            self._build(gopath, jobs[0], packages, programs, jobs, results)
        return results  # type: ignore[return-value]

    def _build(self, gopath, first: Job, packages, programs, jobs, results) -> None:
        argv = [
            "go",
            "test",
            "-count=1",
            "-exec",
            str(self.cache_dir / "keep-test-binary.sh"),
            *packages,
        ]
        built = self.compile(
            argv, first, env=self._env(gopath), writable=[self.cache_dir / "go-build"]
        )
        messages = _messages_by_package(built.stdout + "\n" + built.stderr)
        share = built.seconds / len(packages)
        for name, i in packages.items():
            binary = gopath / "src" / name / "main.test"
            if not binary.exists():
                if built.timed_out:
                    results[i] = Judgement(
                        COMPILE_ERROR, "go test ran out of time", compile_seconds=share
                    )
                else:
                    text = messages.get(name) or built.stderr[-4000:]
                    results[i] = Judgement(
                        COMPILE_ERROR, "did not build or vet", stderr=text, compile_seconds=share
                    )
                continue
            binary.rename(jobs[i].workdir / "main.test")
            results[i] = self.run_tests(["./main.test"], jobs[i], compile_seconds=share)

    def classify(self, outcome: RunOutcome) -> tuple[str, str]:
        verdict, detail = classify_run(outcome, assertion=self.assertion)
        if verdict == FAILED and re.search(r"^panic: ", outcome.output, re.M):
            return RUNTIME_ERROR, "panic"
        return verdict, detail


def _messages_by_package(text: str) -> dict[str, str]:
    """go test's build and vet messages, which come under "# <package>" headers."""
    sections: dict[str, str] = {}
    matches = list(_SECTION.finditer(text))
    for i, match in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
        sections[match[1]] = sections.get(match[1], "") + text[match.start() : end]
    return sections
