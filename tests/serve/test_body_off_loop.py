"""Large request bodies are parsed in a worker thread, not on the event loop that every stream
and ``/health`` share. `pytest tests/serve/test_body_off_loop.py`."""

from __future__ import annotations

import threading

import pytest

from tests.conftest import required_module

required_module("fastapi")
required_module("uvicorn")

from geex.serve import request_body  # noqa: E402
from geex.serve.server import BackgroundServer, create_app  # noqa: E402
from tests.serve.editor_server import post  # noqa: E402


@pytest.mark.parametrize(
    "path", ["/v1/completions", "/v1/chat/completions", "/api/generate", "/v1/tasks/complete"]
)
def test_a_large_body_is_parsed_off_the_event_loop(state, monkeypatch, path):
    threads = []
    parse = request_body.parse_json

    def recording_parse(raw, **kwargs):
        threads.append(threading.get_ident())
        return parse(raw, **kwargs)

    monkeypatch.setattr(request_body, "parse_json", recording_parse)
    small = {"model": "x", "padding": "a"}
    large = {"model": "x", "padding": ["a"] * 40_000}  # > 64 KB of many small items
    with BackgroundServer(create_app(state)) as server:
        for body in (small, small, large):
            post(server.url + path, body)  # refused (no model "x"): only the parse matters
    loop, again, worker = threads
    assert loop == again  # small bodies: on the loop's thread, no hop
    assert worker != loop
