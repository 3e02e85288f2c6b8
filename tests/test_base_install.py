"""The base install alone (scripts/setup.sh without --dev, in a fresh virtual environment)
imports every geex module, finishes a short `geex run` and serves a completion, so that a
dependency missing from pyproject's base list fails here and not on a user's machine.

`pytest tests/test_base_install.py` (about 2 minutes: an install, a 1-minute run, a server).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import finishes_within

REPO = Path(__file__).resolve().parents[1]
# A run of the README's first command, made short: one language, 1 MiB of this machine's code.
SHORT_RUN = """\
budget: 1m
data:
  languages: [python]
  per_language_bytes: 1048576
eval:
  languages: [python]
  max_new_tokens: 32
"""


def base_environ() -> dict[str, str]:
    """This process's environment without what would let the dev environment leak in."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PYTHONNOUSERSITE"] = "1"
    return env


@pytest.fixture(scope="module")
def base_venv(tmp_path_factory) -> Path:
    venv = tmp_path_factory.mktemp("base") / "venv"
    setup = subprocess.run(
        ["scripts/setup.sh"], cwd=REPO, env={**base_environ(), "GEEX_VENV": str(venv)},
        capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    assert setup.returncode == 0, f"scripts/setup.sh failed:\n{setup.stdout}\n{setup.stderr}"
    return venv


def run_in(venv: Path, *argv: str, cwd: Path, timeout: float = 600):
    return subprocess.run(
        [str(venv / "bin" / argv[0]), *argv[1:]], cwd=cwd, env=base_environ(),
        capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip


def test_the_base_environment_has_no_dev_extras(base_venv, tmp_path):
    """Otherwise the checks below would prove nothing: dev tools pull in undeclared imports."""
    probe = (
        "import importlib.util as u; "
        "print([m for m in ('transformers', 'pytest') if u.find_spec(m)])"
    )
    result = run_in(base_venv, "python", "-c", probe, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_every_geex_module_imports_in_the_base_environment(base_venv, tmp_path):
    result = run_in(base_venv, "python", str(REPO / "tests" / "module_walk.py"), cwd=tmp_path)
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["failures"] == {}, report["failures"]
    assert result.returncode == 0
    assert report["modules"] > 50


@pytest.fixture(scope="module")
def short_run(base_venv, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("run")
    (folder / "run.yaml").write_text(SHORT_RUN)
    result = run_in(base_venv, "geex", "run", "run.yaml", "--out", "out", cwd=folder)
    assert result.returncode == 0, f"geex run failed:\n{result.stderr[-4000:]}"
    return folder / "out"


def test_a_short_geex_run_finishes_in_the_base_environment(short_run):
    stages = json.loads((short_run / "run.json").read_text())["stages"]
    assert list(stages) == ["data", "train", "export", "eval", "samples", "report"]
    assert (short_run / "report.html").stat().st_size > 0
    assert (short_run / "train" / "model" / "config.json").is_file()


def banner_url(server: subprocess.Popen) -> str | None:
    """The address in the banner ``geex serve`` prints once the model is loaded."""
    for line in server.stderr:
        found = re.search(r"at (http://127\.0\.0\.1:\d+)/v1", line)
        if found:
            return found.group(1)
    return None


def test_geex_serve_answers_a_completion_in_the_base_environment(base_venv, short_run):
    server = subprocess.Popen(
        [str(base_venv / "bin" / "geex"), "serve", "--model", str(short_run / "train" / "model"),
         "--port", "0", "--log-level", "warning"],
        env=base_environ(), stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        url = finishes_within(300, lambda: banner_url(server), "geex serve's start")
        assert url, f"geex serve exited ({server.poll()}) without serving"
        body = {"prompt": "def add(a, b):\n", "max_tokens": 8, "language": "python"}
        request = urllib.request.Request(
            url + "/v1/completions", data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"}, method="POST",
        )  # fmt: skip
        with urllib.request.urlopen(request, timeout=120) as response:
            answer = json.loads(response.read())
        assert answer["object"] == "text_completion"
        assert isinstance(answer["choices"][0]["text"], str)
        assert answer["usage"]["completion_tokens"] >= 1
    finally:
        os.kill(server.pid, signal.SIGTERM)
        server.wait(timeout=60)
