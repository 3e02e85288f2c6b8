"""tabby-agent 1.5.0 (Tabby's editor agent, from npm) as a real client of `geex serve`'s Tabby API:
its language server completes a line with the text the server produced. Needs node and
`scripts/setup.sh --dev` (npm ci in tests/serve/clients). `pytest tests/serve/test_tabby_agent.py`."""

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
from starlette.responses import Response  # noqa: E402

from geex.serve.server import BackgroundServer  # noqa: E402
from geex.serve.state import ServeLimits  # noqa: E402
from tests.serve.editor_server import (  # noqa: E402
    editor_app,
    post,
    save_tiny_model,
    serving_state,
)

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
def server_and_log(tmp_path_factory):
    """A served tiny model with the api key set; the log of Tabby bodies and answers."""
    folder = save_tiny_model(tmp_path_factory.mktemp("tabby") / "tiny-geex")
    state = serving_state(folder, ServeLimits(api_key=TOKEN))
    app = editor_app(state)
    exchanges: list[tuple[dict, dict]] = []

    @app.middleware("http")
    async def record(request, call_next):
        if request.url.path != "/v1/completions":
            return await call_next(request)
        body = json.loads(await request.body())
        body["authorization"] = request.headers.get("authorization")
        response = await call_next(request)
        chunks = [chunk async for chunk in response.body_iterator]
        answer = json.loads(b"".join(chunks))
        exchanges.append((body, answer))
        return Response(b"".join(chunks), response.status_code, media_type="application/json")

    with BackgroundServer(app) as running:
        yield running, exchanges
    state.engine.close()


def agent_home(tmp_path: Path, endpoint: str) -> Path:
    config = tmp_path / ".tabby-client" / "agent" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text(
        f'[server]\nendpoint = "{endpoint}"\ntoken = "{TOKEN}"\n\n'
        "[anonymousUsageTracking]\ndisable = true\n"
    )
    return tmp_path


@pytest.mark.asyncio
async def test_tabby_agent_completes_with_the_servers_text(node, server_and_log, tmp_path):
    server, exchanges = server_and_log
    home = agent_home(tmp_path, server.url)
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
    assert exchanges, "tabby-agent sent no completion request"
    body, answer = exchanges[-1]
    assert body.pop("authorization") == f"Bearer {TOKEN}"  # the config's token, sent as Tabby does
    assert body["language"] == "python"
    assert body["segments"]["prefix"].endswith("def add(a, b):\n    return ")
    assert body["segments"]["suffix"].startswith("  # sum\n")
    served = answer["choices"][0]["text"]
    assert served.strip(), "the tiny model completed nothing: the test proves nothing"
    # The agent trims the completion (the cursor follows a space) and offers it as the item.
    assert [item.text_edit.new_text for item in result.items] == [served.strip()]
    # The same body sent again is answered with the same text: greedy, no state kept.
    status, again, _ = post(server.url + "/v1/completions", body)
    assert status == 200
    assert json.loads(again)["choices"][0]["text"] == served
