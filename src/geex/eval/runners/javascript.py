"""JavaScript: ``node test.js``; any output fails the program.

HumanEval-X's JavaScript tests use ``console.assert``, which prints "Assertion failed" and
carries on, so the reference harness (and this one) fails a program that prints anything.
JavaScript/162 needs the npm package js-md5: it is taken from the cache's node_modules (see
``geex eval prepare --npm``) or NODE_PATH and copied beside the program; without it such a
program is "unavailable".
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import ClassVar

from geex.errors import GeexError
from geex.eval.runners.base import Job, Runner
from geex.eval.sandbox import RunOutcome
from geex.eval.verdicts import COMPILE_ERROR, FAILED, PASSED, Judgement, classify_run

NPM_PACKAGES = {"js-md5": "0.8.3"}  # package -> the version ``install_npm_packages`` pins
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

    def install_npm_packages(self) -> None:
        """Install the npm packages HumanEval-X needs into the cache (needs npm and network)."""
        npm = shutil.which("npm")
        if npm is None:
            raise GeexError("npm not found: install the Debian package npm")
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        specs = [f"{name}@{version}" for name, version in NPM_PACKAGES.items()]
        argv = [npm, "install", "--prefix", str(self.cache_dir), "--no-audit", "--no-fund",
                "--no-save", "--no-package-lock", *specs]  # fmt: skip
        done = subprocess.run(argv, capture_output=True, text=True)
        if done.returncode != 0:
            raise GeexError(f"npm install {' '.join(specs)} failed: {done.stderr.strip()[-500:]}")

    def note(self) -> str:
        absent = [name for name in NPM_PACKAGES if self.find_module(name) is None]
        if absent:
            return f"npm package(s) {', '.join(absent)} not installed: run with --npm"
        return f"npm package(s) {', '.join(NPM_PACKAGES)} found"

    def judge(self, program: str, job: Job) -> Judgement:
        for name in _REQUIRE.findall(program):
            if name not in NPM_PACKAGES:
                continue  # node's own modules, or a package nobody provides: node will say
            module = self.find_module(name)
            if module is None:
                return self.unavailable(
                    f"the npm package {name} is not installed: run `geex eval prepare --npm`"
                )
            shutil.copytree(module, job.workdir / "node_modules" / name, symlinks=False)
        job.write("test.js", program)
        heap = max(self.settings.memory_bytes >> 21, 256)
        return self.run_tests(["node", f"--max-old-space-size={heap}", "test.js"], job)

    def classify(self, outcome: RunOutcome) -> tuple[str, str]:
        if _SYNTAX.search(outcome.stderr) and _LOADING.search(outcome.stderr):
            return COMPILE_ERROR, "does not parse"
        verdict, detail = classify_run(outcome, assertion=self.assertion)
        if verdict == PASSED and outcome.output:
            return FAILED, "printed output (console.assert failures print and carry on)"
        return verdict, detail
