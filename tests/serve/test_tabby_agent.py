"""tabby-agent 1.5.0 (Tabby's editor agent, from npm) as a real client of `geex serve`, run as the
command itself with an API key: the agent, given the key as its token, completes a line with the
text the server produced. Needs node and `scripts/setup.sh --dev` (npm ci in tests/serve/clients).
`pytest tests/serve/test_tabby_agent.py`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import missing, required_module

required_module("fastapi")
required_module("pytest_lsp")

from lsprotocol import types  # noqa: E402
from pytest_lsp import ClientServerConfig  # noqa: E402

from tests.serve.editor_server import post, save_tiny_model  # noqa: E402
from tests.serve.serve_process import geex_serve  # noqa: E402

CLIENTS = Path(__file__).parent / "clients"
AGENT = CLIENTS / "node_modules" / "tabby-agent" / "dist" / "cli.js"
TOKEN = "test-token-1234"
# The cursor sits after "return " on a line that goes on ("  # sum"): tabby-agent's
# fill-in-line mode, in which it keeps a one-line completion.
BEFORE = "import os\n\n\ndef add(a, b):\n    return "
AFTER = "  # sum\n\n\nprint(add(1, 2))\n"


@pytest.fixture(scope="module")
def node() -> str:
    found = shutil.which("node")
    if found is None:
        missing("needs node on PATH: install the Debian package nodejs")
    if not AGENT.exists():
        missing(f"needs tabby-agent in {CLIENTS} (scripts/setup.sh --dev runs npm ci there)")
    return found


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`geex serve` of a tiny model, with an API key."""
    folder = save_tiny_model(tmp_path_factory.mktemp("tabby") / "tiny-geex")
    with geex_serve(folder, "--api-key", TOKEN, "--model-name", "tiny-geex") as url:
        yield url


def agent_home(tmp_path: Path, endpoint: str) -> Path:
    config = tmp_path / ".tabby-client" / "agent" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text(
        f'[server]\nendpoint = "{endpoint}"\ntoken = "{TOKEN}"\n\n'
        "[anonymousUsageTracking]\ndisable = true\n"
    )
    return tmp_path


@pytest.mark.asyncio
async def test_tabby_agent_completes_with_the_servers_text(node, server, tmp_path):
    # Without the key the server serves nothing: the agent's answer proves it sent its token.
    body = {"language": "python", "segments": {"prefix": BEFORE, "suffix": AFTER}}
    status, refused, _ = post(server + "/v1/completions", body)
    assert status == 401, refused
    status, answer, _ = post(server + "/v1/completions", body, {"Authorization": f"Bearer {TOKEN}"})
    assert status == 200, answer
    served = json.loads(answer)["choices"][0]["text"]
    assert served.strip(), "the tiny model completed nothing: the test proves nothing"

    home = agent_home(tmp_path, server)
    config = ClientServerConfig(
        server_command=[node, str(AGENT), "--lsp", "--stdio"],
        server_env={"HOME": str(home), "PATH": "/usr/bin:/bin"},
    )
    client = await config.start()
    try:
        await client.initialize_session(
            types.InitializeParams(
                capabilities=types.ClientCapabilities(),
                client_info=types.ClientInfo(name="geex-test", version="1"),
            )
        )
        uri = (tmp_path / "add.py").as_uri()
        client.text_document_did_open(
            types.DidOpenTextDocumentParams(
                types.TextDocumentItem(
                    uri=uri, language_id="python", version=1, text=BEFORE + AFTER
                )
            )
        )
        line = BEFORE.count("\n")
        position = types.Position(line=line, character=len(BEFORE.rsplit("\n", 1)[1]))
        result = await client.text_document_completion_async(
            types.CompletionParams(types.TextDocumentIdentifier(uri), position)
        )
    finally:
        await client.shutdown_session()
        await client.stop()
    # The agent sends the text around the cursor as Tabby's segments, so the server answers
    # it as it answered the same segments above (greedy: no state kept); the agent trims the
    # completion (the cursor follows a space) and offers it as the item.
    assert result is not None, "tabby-agent offered no completion"
    assert [item.text_edit.new_text for item in result.items] == [served.strip()]
