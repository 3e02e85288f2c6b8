"""A copy of the VS Code extension (editors/vscode) for its tests to build and run in, so the tree
is left as it was: Node.js checked, node_modules hard-linked, each command's failure shown."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import missing

EXTENSION = Path(__file__).resolve().parents[2] / "editors" / "vscode"
# vite (under vitest) and @vscode/vsce need it; older Node fails with errors that do not say so.
NODE_AT_LEAST = (20, 19)
# Each step takes seconds; the limit only turns a hang into a failure.
STEP_TIMEOUT_S = 300


def npx_program() -> str:
    """npx of a Node.js new enough, with the extension's npm packages installed; else `missing`."""
    found = shutil.which("npx")
    node = shutil.which("node")
    if found is None or node is None:
        missing("needs node and npx on PATH: install the Debian packages nodejs and npm")
    version = subprocess.run([node, "--version"], capture_output=True, text=True).stdout.strip()
    numbers = tuple(int(part) for part in re.findall(r"\d+", version)[:2])
    if numbers < NODE_AT_LEAST:
        missing(f"needs Node.js {'.'.join(map(str, NODE_AT_LEAST))} or newer, not {version}")
    if not (EXTENSION / "node_modules" / ".bin" / "vsce").exists():
        missing(f"needs the extension's npm packages in {EXTENSION} (setup.sh --dev runs npm ci)")
    return found


def copy_extension(folder: Path) -> Path:
    """A copy of editors/vscode in ``folder`` for builds to write into, node_modules hard-linked.

    A real directory, not a symlink: vsce runs `npm list`, which rejects a linked node_modules.
    Hard links make the copy cost nothing where the temporary folder shares the disk; elsewhere
    the files are copied. The tools' caches (.vite, .cache) are left out, as they are rewritten.
    """
    copy = folder / "vscode"
    shutil.copytree(EXTENSION, copy, ignore=shutil.ignore_patterns("node_modules", "out", "*.vsix"))
    modules, caches = EXTENSION / "node_modules", shutil.ignore_patterns(".vite", ".cache")
    try:
        shutil.copytree(modules, copy / "node_modules", symlinks=True, ignore=caches,
                        copy_function=os.link)  # fmt: skip
    except (OSError, shutil.Error):  # another file system: no hard links across it
        shutil.rmtree(copy / "node_modules", ignore_errors=True)
        shutil.copytree(modules, copy / "node_modules", symlinks=True, ignore=caches)
    return copy


def run(command: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    """The command's output; a failure shows the command and what it printed."""
    done = subprocess.run(
        command, cwd=cwd, capture_output=True, text=True, timeout=STEP_TIMEOUT_S,
        env={**os.environ, "NO_COLOR": "1", "FORCE_COLOR": "0", **(env or {})},
    )  # fmt: skip
    if done.returncode != 0:
        output = (done.stdout + done.stderr)[-6000:]
        pytest.fail(f"`{' '.join(command)}` exited {done.returncode} in {cwd}:\n{output}")
    return done.stdout
