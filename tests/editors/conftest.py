"""What the editor tests share: one `geex serve` of a tiny model with an API key, tabby-agent
(node and its command line), the `geex` command the editors run for tasks, and the terminal
captures the docs show."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

from tests.conftest import missing
from tests.serve.editor_server import save_tiny_model
from tests.serve.serve_process import geex_serve
from tests.serve.tabby_agent_client import API_KEY, node_program

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="package")
def server(tmp_path_factory, api_key):
    """`geex serve` of a tiny model, with tabby-agent's test key; its URL."""
    folder = save_tiny_model(tmp_path_factory.mktemp("editors") / "tiny-geex")
    with geex_serve(folder, "--api-key", api_key, "--model-name", "tiny-geex") as url:
        yield url


@pytest.fixture(scope="package")
def api_key() -> str:
    """The key the `server` fixture's `geex serve` was started with."""
    return API_KEY


@pytest.fixture(scope="package")
def node() -> str:
    """node, with tabby-agent installed for it."""
    return node_program()


def geex_program() -> str:
    """The `geex` command of the Python running the tests, as the user's shell finds it."""
    beside = Path(sys.executable).with_name("geex")
    found = str(beside) if beside.exists() else shutil.which("geex")
    if found is None:
        missing("needs the geex command (scripts/setup.sh installs it in .venv/bin)")
    return found


def as_shown(line: str) -> str:
    """A line as Neovim and Emacs show it: a control character as ^X."""
    return "".join(f"^{chr(ord(c) + 64)}" if ord(c) < 32 else c for c in line)


def write_docs_captures(captures: dict[str, str]) -> None:
    """With GEEX_DOCS_SCREENSHOTS=DIR, the terminal captures docs/editors.md shows, into DIR."""
    docs = os.environ.get("GEEX_DOCS_SCREENSHOTS")
    if docs:
        Path(docs).mkdir(parents=True, exist_ok=True)
        for name, text in captures.items():
            (Path(docs) / name).write_text(text + "\n")
