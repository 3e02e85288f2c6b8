"""`geex eval prepare --npm/--pip` installs packages where the sandboxed programs find them: a
benchmark's samples judged "unavailable" before are judged on their merits after, and a rerun
into the same folder judges them again. Needs no network (local tarball and wheel).
Run: .venv/bin/python -m pytest tests/eval/test_prepare_packages.py -q"""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import zipfile
from pathlib import Path

import pytest

from geex.cli import main
from geex.errors import GeexError
from geex.eval.evaluator import EvalConfig, Evaluator
from geex.eval.runners import RunSettings
from geex.eval.runners.javascript import JavaScriptRunner
from geex.eval.sandbox import Sandbox
from geex.eval.verdicts import PASSED, UNAVAILABLE
from tests.conftest import missing, required_program

from .conftest import inline_sample


@pytest.fixture
def npm():
    """node and npm, or `missing` naming their Debian packages (a failure in CI)."""
    required_program("node", package="nodejs")
    return required_program("npm", package="npm")


CHUNK_PROBLEM = {
    "task_id": "JavaScript/0",
    "prompt": "/* Split xs into pairs: chunkPairs([1, 2, 3]) is [[1, 2], [3]] */\n"
    "const chunkPairs = (xs) => {\n",
    "declaration": "\nconst chunkPairs = (xs) => {\n",
    "canonical_solution": "  const out = [];\n  for (let i = 0; i < xs.length; i += 2) "
    "out.push(xs.slice(i, i + 2));\n  return out;\n};\n",
    "test": "const _ = require('lodash');\nconst testChunkPairs = () => {\n"
    "  for (const xs of [[], [1], [1, 2, 3], [4, 5, 6, 7]]) {\n"
    "    console.assert(JSON.stringify(chunkPairs(xs)) === JSON.stringify(_.chunk(xs, 2)));\n"
    "  }\n};\ntestChunkPairs();\n",
    "example_test": "",
}
# A stand-in for lodash, so that no network is needed.
LODASH_FIXTURE = (
    "exports.chunk = (xs, n) => {\n  const out = [];\n"
    "  for (let i = 0; i < xs.length; i += n) out.push(xs.slice(i, i + n));\n  return out;\n};\n"
)


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("GEEX_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("NODE_PATH", raising=False)
    return tmp_path / "cache" / "eval"


def npm_tarball(folder: Path, name: str, source: str) -> Path:
    folder.mkdir(parents=True)
    (folder / "package.json").write_text(json.dumps({"name": name, "version": "0.0.1"}))
    (folder / "index.js").write_text(source)
    packed = subprocess.run(["npm", "pack", "--silent"], cwd=folder, capture_output=True,
                            text=True, check=True)  # fmt: skip
    return folder / packed.stdout.strip().splitlines()[-1]


def evaluate_cli(capsys, data: Path, samples: Path, out: Path) -> tuple[dict, str]:
    argv = ["eval", "humanevalx", "--data", str(data), "--samples", str(samples),
            "--languages", "js", "--workers", "1", "--out", str(out), "--no-progress"]  # fmt: skip
    code = main(argv)
    printed, err = capsys.readouterr()
    assert code == 0, err
    return json.loads((out / "summary.json").read_text()), printed


@pytest.mark.usefixtures("npm")
def test_npm_prepare_turns_unavailable_samples_into_verdicts(capsys, cache, tmp_path):
    data = tmp_path / "benchmark"
    data.mkdir()
    (data / "humaneval_js.jsonl").write_text(json.dumps(CHUNK_PROBLEM) + "\n")
    samples = tmp_path / "samples.jsonl"
    right = {"task_id": "JavaScript/0", "completion_id": 0,
             "generation": CHUNK_PROBLEM["canonical_solution"]}  # fmt: skip
    wrong = {"task_id": "JavaScript/0", "completion_id": 1, "generation": "  return [xs];\n};\n"}
    samples.write_text(json.dumps(right) + "\n" + json.dumps(wrong) + "\n")
    out = tmp_path / "out"

    before, printed = evaluate_cli(capsys, data, samples, out)
    assert before["overall"]["unavailable"] == 2
    assert before["overall"]["judged"] == 0
    assert before["overall"]["pass@k"] == {}
    assert before["missing_packages"] == [
        {"package": "lodash", "install": "geex eval prepare --npm lodash", "samples": 2}
    ]
    assert "geex eval prepare --npm lodash" in printed
    assert "geex eval prepare --npm lodash" in (out / "report.md").read_text()

    tarball = npm_tarball(tmp_path / "lodash-src", "lodash", LODASH_FIXTURE)
    assert main(["eval", "prepare", "--languages", "js", "--npm", str(tarball)]) == 0
    assert f"npm packages installed in {cache / 'node_modules'}" in capsys.readouterr().out

    after, printed = evaluate_cli(capsys, data, samples, out)
    assert after["overall"]["verdicts"] == {"passed": 1, "failed": 1}
    assert after["overall"]["pass@k"] == {"pass@1": 0.5}
    assert after["missing_packages"] == []
    assert "could not be judged" not in printed


@pytest.mark.usefixtures("npm")
def test_npm_install_failure_is_one_clear_error(capsys, cache, tmp_path):
    code = main(["eval", "prepare", "--languages", "js", "--npm", str(tmp_path / "none.tgz")])
    assert code == 2
    assert "npm install" in capsys.readouterr().err


def test_missing_npm_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    runner = JavaScriptRunner(Sandbox("rlimits"), tmp_path / "cache", RunSettings())
    with pytest.raises(GeexError, match="npm not found: install the Debian package npm"):
        runner.install_npm_packages(["lodash"])


def python_wheel(folder: Path, module: str, source: str) -> Path:
    """A pure-Python wheel of one module, made by hand: building one would need the network."""
    info = f"{module}-1.0.dist-info"
    files = {
        f"{module}/__init__.py": source,
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {module}\nVersion: 1.0\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: geex-tests\nRoot-Is-Purelib: true\n"
        "Tag: py3-none-any\n",
    }

    def digest(text: str) -> str:
        raw = hashlib.sha256(text.encode()).digest()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    rows = [f"{path},sha256={digest(text)},{len(text.encode())}" for path, text in files.items()]
    files[f"{info}/RECORD"] = "\n".join([*rows, f"{info}/RECORD,,"]) + "\n"
    wheel = folder / f"{module}-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, text in files.items():
            archive.writestr(path, text)
    return wheel


def test_pip_prepare_makes_the_module_importable_in_the_sandbox(tmp_path):
    module = "geex_wheel_fixture"
    sample = inline_sample(
        "python",
        "def answer():\n",
        "    return 41\n",
        f"import {module}\nassert answer() == {module}.VALUE\n",
    )
    config = EvalConfig(workers=1, cache_dir=tmp_path / "cache")
    with Evaluator(config) as evaluator:
        (before,) = evaluator.judge([sample])
        runner = evaluator.runner("python")
        check = subprocess.run([runner.interpreter, "-m", "pip", "--version"], capture_output=True)
        if check.returncode != 0:
            missing(f"{runner.interpreter} has no pip: install the Debian package python3-pip")
        runner.install_pip_packages([str(python_wheel(tmp_path, module, "VALUE = 41\n"))])
    assert before.verdict == UNAVAILABLE
    assert before.install == f"geex eval prepare --pip {module}"
    with Evaluator(config) as evaluator:  # a new run, as after `geex eval prepare`
        (after,) = evaluator.judge([sample])
    assert after.verdict == PASSED, after.stderr
