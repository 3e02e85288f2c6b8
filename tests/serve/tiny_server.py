"""A tiny random Geex checkpoint served on a free loopback port, for the server's tests."""

from __future__ import annotations

import contextlib
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from geex.eval.problems import load_embedded
from geex.model import ModelConfig, build_model
from geex.model.checkpoint import save_checkpoint
from geex.serve.engine import Engine
from geex.serve.models import load_served_model
from geex.serve.server import BackgroundServer, create_app
from geex.serve.state import ServeLimits, ServerState
from geex.tokenizer import train_tokenizer


def save_tiny_checkpoint(folder: Path, max_seq_len: int = 256) -> Path:
    """A 2-layer random model and a tokenizer trained on a few programs, saved together."""
    texts = [p.prompt + p.canonical_solution for p in load_embedded(["python", "cpp"])]
    tokenizer = train_tokenizer(texts * 3, vocab_size=600, languages=["python", "cpp"])
    # init_std 0.1 rather than 0.02: varied greedy text, so that stop sequences have something
    # to cut.
    config = ModelConfig(n_layer=2, n_head=2, d_model=32, max_seq_len=max_seq_len,
                         vocab_size=tokenizer.vocab_size, init_std=0.1)  # fmt: skip
    save_checkpoint(build_model(config, seed=0).eval(), folder, tokenizer=tokenizer)
    return folder


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
