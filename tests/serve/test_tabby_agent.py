"""tabby-agent 1.5.0 (Tabby's editor agent, from npm) as a real client of `geex serve`, run as the
command itself with an API key: the agent, given the key as its token, completes a line with the
text the server produced. Needs node and `scripts/setup.sh --dev` (npm ci in tests/serve/clients).
`pytest tests/serve/test_tabby_agent.py`."""

from __future__ import annotations

import json

import pytest

from tests.conftest import required_module

required_module("fastapi")
required_module("pytest_lsp")

from lsprotocol import types  # noqa: E402
from pytest_lsp import ClientServerConfig  # noqa: E402

from tests.serve.editor_server import post, save_tiny_model  # noqa: E402
from tests.serve.serve_process import geex_serve  # noqa: E402
from tests.serve.tabby_agent_client import (  # noqa: E402
    AFTER,
    API_KEY,
    BEFORE,
    agent_command,
    agent_home,
    node_program,
)


@pytest.fixture(scope="module")
def node() -> str:
    return node_program()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`geex serve` of a tiny model, with an API key."""
    folder = save_tiny_model(tmp_path_factory.mktemp("tabby") / "tiny-geex")
    with geex_serve(folder, "--api-key", API_KEY, "--model-name", "tiny-geex") as url:
        yield url


@pytest.mark.asyncio
async def test_tabby_agent_completes_with_the_servers_text(node, server, tmp_path):
    # Without the key the server serves nothing: the agent's answer proves it sent its token.
    body = {"language": "python", "segments": {"prefix": BEFORE, "suffix": AFTER}}
    status, refused, _ = post(server + "/v1/completions", body)
    assert status == 401, refused
    status, answer, _ = post(
        server + "/v1/completions", body, {"Authorization": f"Bearer {API_KEY}"}
    )
    assert status == 200, answer
    served = json.loads(answer)["choices"][0]["text"]
    assert served.strip(), "the tiny model completed nothing: the test proves nothing"

    home = agent_home(tmp_path, server)
    config = ClientServerConfig(
        server_command=agent_command(node),
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
