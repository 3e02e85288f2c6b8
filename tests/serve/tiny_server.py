"""A tiny random Geex checkpoint behind ``create_app`` on a free loopback port, for the server's
tests; the checkpoint is the editor tests' (``save_tiny_checkpoint``)."""

from __future__ import annotations

import contextlib
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from geex.serve.engine import Engine
from geex.serve.models import load_served_model
from geex.serve.server import BackgroundServer, create_app
from geex.serve.state import ServeLimits, ServerState
from tests.serve.editor_server import save_tiny_model as save_tiny_checkpoint

__all__ = ["call", "save_tiny_checkpoint", "serving"]


@contextlib.contextmanager
def serving(
    checkpoint: Path, limits: ServeLimits | None = None, **engine: int
) -> Iterator[tuple[BackgroundServer, ServerState]]:
    """The checkpoint behind ``create_app`` on a real uvicorn server, with its state."""
    model = load_served_model(checkpoint, device="cpu", max_slots=engine.get("max_batch", 16))
    with Engine(model.runner, model.codec, **engine) as running:
        state = ServerState(model, running, limits or ServeLimits())
        with BackgroundServer(create_app(state)) as server:
            yield server, state


def call(server, path: str, body=None, headers: dict | None = None, method: str | None = None):
    """(status, parsed JSON, response headers) of one request; ``body`` may be raw bytes."""
    data = None
    if body is not None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(server.url + path, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    for key, value in (headers or {}).items():
        request.add_header(key, value)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read()), response.headers
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read()), err.headers
