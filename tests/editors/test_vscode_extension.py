"""The VS Code extension (editors/vscode) builds and passes its own checks: TypeScript strict,
ESLint and Prettier, its vitest suite against a fake geex serve, its end-to-end tests against a
real `geex serve` of a tiny model, and a .vsix from vsce that holds the compiled extension and its
manifest and none of its sources. Everything runs in a copy, so the tree is left as it was. Needs Node.js 20.19+ and `scripts/setup.sh --dev` (npm ci in
editors/vscode). `pytest tests/editors/test_vscode_extension.py`."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

from tests.conftest import missing, required_module

EXTENSION = Path(__file__).resolve().parents[2] / "editors" / "vscode"
# vite (under vitest) and @vscode/vsce need it; older Node fails with errors that do not say so.
NODE_AT_LEAST = (20, 19)
# Each step takes seconds; the limit only turns a hang into a failure.
STEP_TIMEOUT_S = 300
API_KEY = "test-key-5678"


@pytest.fixture(scope="module")
def npx() -> str:
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


@pytest.fixture(scope="module")
def extension(tmp_path_factory, npx) -> Path:
    """A copy of editors/vscode for builds to write into, its node_modules hard-linked.

    A real directory, not a symlink: vsce runs `npm list`, which rejects a linked node_modules.
    Hard links make the copy cost nothing where the temporary folder shares the disk; elsewhere
    the files are copied. The tools' caches (.vite, .cache) are left out, as they are rewritten.
    """
    copy = tmp_path_factory.mktemp("vscode") / "vscode"
    shutil.copytree(EXTENSION, copy, ignore=shutil.ignore_patterns("node_modules", "out", "*.vsix"))
    modules, caches = EXTENSION / "node_modules", shutil.ignore_patterns(".vite", ".cache")
    try:
        shutil.copytree(modules, copy / "node_modules", symlinks=True, ignore=caches,
                        copy_function=os.link)  # fmt: skip
    except (OSError, shutil.Error):  # another file system: no hard links across it
        shutil.rmtree(copy / "node_modules", ignore_errors=True)
        shutil.copytree(modules, copy / "node_modules", symlinks=True, ignore=caches)
    return copy


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`geex serve` of a tiny random model, with an API key."""
    required_module("fastapi")
    from tests.serve.editor_server import save_tiny_model
    from tests.serve.serve_process import geex_serve

    folder = save_tiny_model(tmp_path_factory.mktemp("editors") / "tiny-geex")
    with geex_serve(folder, "--api-key", API_KEY, "--model-name", "tiny-geex") as url:
        yield url


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


def test_typescript_compiles_strict(extension, npx):
    run([npx, "tsc", "-p", "tsconfig.test.json"], extension)


def test_eslint_and_prettier_are_clean(extension, npx):
    run(["npm", "run", "lint"], extension)


def test_unit_tests_pass(extension, npx):
    output = run(["npm", "test"], extension)
    assert re.search(r"Tests\s+\d+ passed", output), output[-2000:]
    assert "skipped" not in output, output[-2000:]


def test_end_to_end_against_geex_serve(extension, npx, server):
    env = {"GEEX_E2E_URL": server, "GEEX_E2E_API_KEY": API_KEY}
    output = run([npx, "vitest", "run", "test/serve.e2e.ts"], extension, env)
    assert re.search(r"Tests\s+4 passed", output), output[-2000:]


def test_vsix_holds_the_compiled_extension_and_no_sources(extension, npx, tmp_path):
    vsix = tmp_path / "geex.vsix"
    run(
        [npx, "vsce", "package", "--allow-missing-repository", "--skip-license", "--out",
         str(vsix)],
        extension,
    )  # fmt: skip
    manifest = json.loads((EXTENSION / "package.json").read_text())
    with zipfile.ZipFile(vsix) as archive:
        names = archive.namelist()
        packaged = json.loads(archive.read("extension/package.json"))
        extension_js = archive.read("extension/out/extension.js").decode()
    assert "extension/out/extension.js" in names, names
    assert packaged["main"] == "./out/extension.js"
    commands = {c["command"] for c in packaged["contributes"]["commands"]}
    assert commands == {c["command"] for c in manifest["contributes"]["commands"]}
    assert {"geex.toggleCompletion", "geex.statusMenu", "geex.showCandidates"} <= commands
    # Every module the compiled extension requires is in the package.
    for module in re.findall(r'require\("\./([\w.]+)"\)', extension_js):
        assert f"extension/out/{module}.js" in names, (module, names)
    leaked = [
        name for name in names
        if re.match(r"extension/(src|test|node_modules)/", name) or name.endswith((".ts", ".map"))
    ]  # fmt: skip
    assert not leaked, leaked


def test_install_script_builds_the_vsix_and_installs_it_with_the_editors_command(
    extension, npx, tmp_path
):
    """README's `editors/vscode/install.sh`: the .vsix is built and handed to `code`."""
    calls = tmp_path / "calls.txt"
    fake_code = tmp_path / "code"
    fake_code.write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    fake_code.chmod(0o755)
    output = run(["bash", "install.sh"], extension, {"CODE": str(fake_code)})
    vsix = extension / "geex.vsix"
    assert calls.read_text().split() == ["--install-extension", str(vsix), "--force"]
    with zipfile.ZipFile(vsix) as archive:
        assert "extension/out/extension.js" in archive.namelist()
    assert "installed" in output


def test_install_script_without_the_editor_names_install_from_vsix(extension, npx):
    done = subprocess.run(
        ["bash", "install.sh"], cwd=extension, capture_output=True, text=True,
        timeout=STEP_TIMEOUT_S, env={**os.environ, "CODE": "no-such-editor-command"},
    )  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    assert "'no-such-editor-command' is not on PATH" in done.stderr
    assert "Install from VSIX" in done.stderr and str(extension / "geex.vsix") in done.stderr
