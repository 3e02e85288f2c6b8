"""What the editor tests share: one `geex serve` of a tiny model with an API key, and the
answers the server gives directly, which each editor must show."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from tests.conftest import missing
from tests.serve.editor_server import post, save_tiny_model
from tests.serve.serve_process import geex_serve

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="package")
def server(tmp_path_factory):
    """`geex serve` of a tiny model, with tabby-agent's test key; its URL."""
    from tests.serve.test_tabby_agent import TOKEN  # a test module: imported where it is used

    folder = save_tiny_model(tmp_path_factory.mktemp("editors") / "tiny-geex")
    with geex_serve(folder, "--api-key", TOKEN, "--model-name", "tiny-geex") as url:
        yield url


@pytest.fixture(scope="package")
def api_key() -> str:
    """The key the `server` fixture's `geex serve` was started with."""
    from tests.serve.test_tabby_agent import TOKEN

    return TOKEN


def geex_program() -> str:
    """The `geex` command of the Python running the tests, as the user's shell finds it."""
    beside = Path(sys.executable).with_name("geex")
    found = str(beside) if beside.exists() else shutil.which("geex")
    if found is None:
        missing("needs the geex command (scripts/setup.sh installs it in .venv/bin)")
    return found


def served(url: str, path: str, body: dict) -> dict:
    """The server's JSON answer to ``body``, asked with the key."""
    from tests.serve.test_tabby_agent import TOKEN

    status, answer, _ = post(url + path, body, {"Authorization": f"Bearer {TOKEN}"})
    assert status == 200, answer
    return json.loads(answer)
