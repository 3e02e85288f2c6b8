"""JavaScript: ``node test.js``; any output fails the program.

HumanEval-X's JavaScript tests use ``console.assert``, which prints "Assertion failed" and
carries on, so the reference harness (and this one) fails a program that prints anything.
npm packages a program requires (JavaScript/162 needs js-md5) are taken from the cache's
node_modules (``geex eval prepare --npm``), or from NODE_PATH for the ones the reference
harness provides, and copied beside the program, with the packages they depend on: the
sandbox user cannot read the harness's cache folder. A package found nowhere makes node fail
with "Cannot find module", which ``geex.eval.libraries`` turns into "unavailable" when the
benchmark itself requires it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

from geex.errors import GeexError
from geex.eval.runners.base import Job, Runner
from geex.eval.sandbox import RunOutcome
from geex.eval.verdicts import (
    COMPILE_ERROR,
    FAILED,
    PASSED,
    RUNTIME_ERROR,
    SANDBOX_VIOLATION,
    Judgement,
    classify_run,
)

# What HumanEval-X needs: package -> the version ``geex eval prepare --npm`` pins by default.
NPM_PACKAGES = {"js-md5": "0.8.3"}
# node reports a file that does not parse as a SyntaxError raised while loading the module.
_SYNTAX = re.compile(r"^SyntaxError: ", re.M)
_LOADING = re.compile(r"\bat (wrapSafe|internalCompileFunction|compileFunction)\b")
_REQUIRE = re.compile(r"""require\s*\(\s*['"]([^'"./][^'"]*)['"]\s*\)""")


class JavaScriptRunner(Runner):
    key = "javascript"
    tools: ClassVar[dict[str, str]] = {"node": "nodejs"}
    assertion = re.compile(r"Assertion failed|AssertionError")

    def module_folders(self) -> list[Path]:
        folders = [self.cache_dir / "node_modules"]
        folders += [Path(p) for p in os.environ.get("NODE_PATH", "").split(os.pathsep) if p]
        return folders

    def find_module(self, name: str) -> Path | None:
        for folder in self.module_folders():
            if (folder / name / "package.json").is_file():
                return folder / name
        return None

    def provided_module(self, name: str) -> Path | None:
        """Package ``name`` where the programs may have it: any package the cache holds (put
        there on purpose by ``geex eval prepare --npm``), and on NODE_PATH only what the
        reference harness provides (``NPM_PACKAGES``). NODE_PATH may be a global tree
        (npm itself, build tools): a completion requiring one of those must not get it
        copied beside it, as the reference harness would not have had it."""
        cached = self.cache_dir / "node_modules" / name
        if (cached / "package.json").is_file():
            return cached
        return self.find_module(name) if name in NPM_PACKAGES else None

    def lacks_library(self, name: str) -> bool:
        """Whether the package of ``name`` is nowhere the programs get it from: with it
        there, a file missing inside it ("js-md5/nope") is the program's mistake."""
        return self.provided_module(npm_package_of(name)) is None

    def install_npm_packages(self, specs: Sequence[str] = ()) -> Path:
        """Install npm packages (names, name@version, tarballs, folders; by default what
        HumanEval-X needs) into the cache's node_modules, which ``judge`` copies from.
        Returns that folder."""
        npm = shutil.which("npm")
        if npm is None:
            raise GeexError("npm not found: install the Debian package npm")
        specs = list(specs) or [f"{name}@{version}" for name, version in NPM_PACKAGES.items()]
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        specs = [self._keep_tarball(spec) for spec in specs]
        # Saved to the cache's package.json: npm removes installed packages it does not list.
        argv = [npm, "install", "--prefix", str(self.cache_dir), "--no-audit", "--no-fund",
                "--no-package-lock", *specs]  # fmt: skip
        done = subprocess.run(argv, capture_output=True, text=True)
        if done.returncode != 0:
            errors = [
                line.split(" ", 2)[-1]
                for line in done.stderr.splitlines()
                if line.startswith(("npm error", "npm ERR!")) and "complete log" not in line
            ]
            reason = "; ".join(e for e in errors[:4] if e.strip()) or done.stderr.strip()[-500:]
            raise GeexError(f"npm install {' '.join(specs)} failed: {reason}")
        return self.cache_dir / "node_modules"

    def _keep_tarball(self, spec: str) -> str:
        """A tarball's copy in the cache: every later install reads the cache's package.json
        again, which must not point at a file since deleted."""
        path = Path(spec.removeprefix("file:"))
        if not (spec.endswith((".tgz", ".tar.gz")) and path.is_file()):
            return spec
        kept = self.cache_dir / "npm-tarballs" / path.name
        kept.parent.mkdir(exist_ok=True)
        shutil.copyfile(path, kept)
        return str(kept)

    def copy_package(self, name: str, node_modules: Path, dependency: bool = False) -> bool:
        """Copy package ``name`` (one the programs may have, or a ``dependency`` of one) and
        what it depends on into ``node_modules``; False when it is not there to copy."""
        if (node_modules / name).exists():
            return True
        module = self.find_module(name) if dependency else self.provided_module(name)
        if module is None:
            return False
        shutil.copytree(module, node_modules / name, symlinks=False)
        try:
            manifest = json.loads((module / "package.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return True
        for needed in manifest.get("dependencies") or {}:
            self.copy_package(needed, node_modules, dependency=True)
        return True

    def note(self) -> str:
        absent = [name for name in NPM_PACKAGES if self.find_module(name) is None]
        if absent:
            return (
                f"npm package(s) {', '.join(absent)} not installed: run `geex eval prepare --npm`"
            )
        return f"npm package(s) {', '.join(NPM_PACKAGES)} found"

    def judge(self, program: str, job: Job) -> Judgement:
        for name in _REQUIRE.findall(program):
            # node's own modules are not installed anywhere, nor are packages nobody
            # provides: node says so, and the verdict tells whose fault it is.
            self.copy_package(npm_package_of(name), job.workdir / "node_modules")
        job.write("test.js", program)
        heap = max(self.settings.memory_bytes >> 21, 256)
        return self.run_tests(["node", f"--max-old-space-size={heap}", "test.js"], job)

    def classify(self, outcome: RunOutcome) -> tuple[str, str]:
        if _SYNTAX.search(outcome.stderr) and _LOADING.search(outcome.stderr):
            return COMPILE_ERROR, "does not parse"
        verdict, detail = classify_run(outcome, assertion=self.assertion)
        if verdict == PASSED and outcome.output:
            return FAILED, "printed output (console.assert failures print and carry on)"
        if verdict == RUNTIME_ERROR and outcome.signal == signal.SIGSEGV:
            # JavaScript cannot touch memory itself: node segfaults where an allocation
            # outside V8's heap fails under the address-space limit (stdout's write buffers
            # pile up there when console.log outruns a pipe read slowly on a busy machine).
            return SANDBOX_VIOLATION, "memory limit (node crashed on a failed allocation)"
        return verdict, detail


def npm_package_of(request: str) -> str:
    """The package a ``require`` names: "lodash" of "lodash/fp", "@scope/name" of deeper."""
    parts = request.split("/")
    return "/".join(parts[:2]) if request.startswith("@") else parts[0]
