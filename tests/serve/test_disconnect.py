"""A client that hangs up on a non-streamed request cancels its generation, on every protocol.
`pytest tests/serve/test_disconnect.py`."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from urllib.parse import urlsplit

import pytest

from tests.conftest import required_module

required_module("fastapi")
required_module("uvicorn")


class StalledHandle:
    """A sequence that never ends until cancelled."""

    done = False
    prompt_tokens = 1

    def __init__(self) -> None:
        self.cancelled = threading.Event()

    async def result(self):
        await asyncio.sleep(3600)

    async def stream(self):
        await asyncio.sleep(3600)
        yield ""

    def cancel(self) -> None:
        self.cancelled.set()


def post_and_hang_up(url: str, path: str, body: dict) -> None:
    """Send the request, wait a moment for it to reach the engine, and close the connection."""
    where = urlsplit(url)
    raw = json.dumps(body).encode()
    head = (f"POST {path} HTTP/1.1\r\nHost: {where.netloc}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(raw)}\r\n\r\n").encode()  # fmt: skip
    with socket.create_connection((where.hostname, where.port), timeout=10) as sock:
        sock.sendall(head + raw)
        time.sleep(0.3)


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/completions", {"prompt": "def f():\n", "max_tokens": 8}),
        ("/v1/completions", {"segments": {"prefix": "def f():\n"}}),
        ("/api/generate", {"model": "tiny-geex", "prompt": "def f():\n", "stream": False}),
        ("/completion", {"prompt": "def f():\n"}),
        ("/infill", {"input_prefix": "def f():\n", "input_suffix": "\n"}),
        ("/v1/tasks/complete", {"prefix": "def f():\n"}),
    ],
)
def test_a_client_that_hangs_up_cancels_its_generation(server, state, monkeypatch, path, body):
    handles = []

    def stalled_submit(*args, **kwargs):
        handles.append(StalledHandle())
        return [handles[-1]]

    monkeypatch.setattr(state.engine, "submit", stalled_submit)
    post_and_hang_up(server.url, path, body)
    assert len(handles) == 1
    assert handles[0].cancelled.wait(timeout=20), "the generation went on after the client left"
