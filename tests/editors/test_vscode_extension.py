"""The VS Code extension (editors/vscode) builds and passes its own checks: TypeScript strict,
ESLint and Prettier, its vitest suite against a fake geex serve, its end-to-end tests against
the editors' `geex serve` of a tiny model, and install.sh's .vsix, built once, which holds the
compiled extension and its manifest and none of its sources. Everything runs in a copy, so the
tree is left as it was. Needs Node.js 20.19+ and `scripts/setup.sh --dev` (npm ci in
editors/vscode). `pytest tests/editors/test_vscode_extension.py`."""

from __future__ import annotations

import json
import os
import re
import subprocess
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.editors.vscode_copy import EXTENSION, STEP_TIMEOUT_S, copy_extension, npx_program, run


@dataclass(frozen=True)
class Installed:
    """What `install.sh` did with a stand-in for the editor's `code` command."""

    vsix: Path
    code_calls: list[str]
    output: str


@pytest.fixture(scope="module")
def npx() -> str:
    return npx_program()


@pytest.fixture(scope="module")
def extension(tmp_path_factory, npx) -> Path:
    return copy_extension(tmp_path_factory.mktemp("vscode"))


@pytest.fixture(scope="module")
def installed(extension, tmp_path_factory) -> Installed:
    """README's `editors/vscode/install.sh`, run once: it builds the .vsix and hands it to
    `code`, here a script that records its arguments."""
    folder = tmp_path_factory.mktemp("code")
    calls, fake_code = folder / "calls.txt", folder / "code"
    fake_code.write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    fake_code.chmod(0o755)
    output = run(["bash", "install.sh"], extension, {"CODE": str(fake_code)})
    return Installed(extension / "geex.vsix", calls.read_text().split(), output)


def test_typescript_compiles_strict(extension, npx):
    run([npx, "tsc", "-p", "tsconfig.test.json"], extension)


def test_eslint_and_prettier_are_clean(extension, npx):
    run(["npm", "run", "lint"], extension)


def test_unit_tests_pass(extension, npx):
    output = run(["npm", "test"], extension)
    assert re.search(r"Tests\s+\d+ passed", output), output[-2000:]
    assert "skipped" not in output, output[-2000:]


def test_end_to_end_against_geex_serve(extension, npx, server, api_key):
    env = {"GEEX_E2E_URL": server, "GEEX_E2E_API_KEY": api_key}
    output = run([npx, "vitest", "run", "test/serve.e2e.ts"], extension, env)
    assert re.search(r"Tests\s+4 passed", output), output[-2000:]


def test_install_script_installs_the_vsix_with_the_editors_command(installed):
    assert installed.code_calls == ["--install-extension", str(installed.vsix), "--force"]
    assert "installed" in installed.output


def test_vsix_holds_the_compiled_extension_and_no_sources(installed):
    manifest = json.loads((EXTENSION / "package.json").read_text())
    with zipfile.ZipFile(installed.vsix) as archive:
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


def test_install_script_without_the_editor_names_install_from_vsix(extension, installed):
    """After the first install, so npm's packages are current and only vsce runs again."""
    done = subprocess.run(
        ["bash", "install.sh"], cwd=extension, capture_output=True, text=True,
        timeout=STEP_TIMEOUT_S, env={**os.environ, "CODE": "no-such-editor-command"},
    )  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    assert "'no-such-editor-command' is not on PATH" in done.stderr
    assert "Install from VSIX" in done.stderr and str(installed.vsix) in done.stderr
