"""A tiny Geex model and its server state, for the editor protocol tests, which serve it with
``geex.serve.server.create_app``: the app ``geex serve`` serves, every protocol mounted.
"""

from __future__ import annotations

import dataclasses
import json
import urllib.error
import urllib.request
from pathlib import Path

from geex.eval.problems import load_embedded
from geex.model import ModelConfig, build_model
from geex.model.checkpoint import save_checkpoint
from geex.serve.engine import Engine, GenerationParams
from geex.serve.models import load_served_model
from geex.serve.state import ServeLimits, ServerState
from geex.tokenizer import train_tokenizer


def save_tiny_model(folder: Path) -> Path:
    """A tiny random Geex model and a tokenizer (with FIM tokens) trained on a few programs."""
    texts = [p.prompt + p.canonical_solution for p in load_embedded(["python", "cpp"])]
    tokenizer = train_tokenizer(texts * 3, vocab_size=600, languages=["python", "cpp"])
    # init_std 0.1: varied greedy text rather than one token repeated.
    config = ModelConfig(n_layer=2, n_head=2, d_model=32, max_seq_len=256,
                         vocab_size=tokenizer.vocab_size, init_std=0.1)  # fmt: skip
    save_checkpoint(build_model(config, seed=0).eval(), folder, tokenizer=tokenizer)
    return folder


def serving_state(folder: Path, limits: ServeLimits | None = None) -> ServerState:
    model = load_served_model(folder, device="cpu", name="tiny-geex", max_slots=2)
    engine = Engine(model.runner, model.codec, max_queue=8)
    return ServerState(model, engine, limits or ServeLimits())


def post(url: str, body, headers: dict | None = None) -> tuple[int, bytes, dict]:
    """(status, raw body, headers) of a JSON POST; ``body`` may be raw bytes."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method="POST")
    request.add_header("Content-Type", "application/json")
    for key, value in (headers or {}).items():
        request.add_header(key, value)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as err:
        return err.code, err.read(), dict(err.headers)


def served(url: str, path: str, body: dict, key: str) -> dict:
    """The server's JSON answer to ``body`` at ``path``, asked with ``key``; anything but a 200
    fails the test with the server's answer."""
    status, answer, _ = post(url + path, body, {"Authorization": f"Bearer {key}"})
    assert status == 200, answer
    return json.loads(answer)


def get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def expected_text(state: ServerState, prompt_ids: list[int], **params) -> str:
    """What the engine answers for ``prompt_ids``, greedy unless told otherwise."""
    params = {"temperature": 0.0, "stop_token_ids": state.model.stop_token_ids, **params}
    [completion] = state.engine.generate(prompt_ids, GenerationParams(**params))
    return completion.text


def without_fim(state: ServerState) -> ServerState:
    """The same model and engine, served as a model with no FIM tokens."""
    return ServerState(dataclasses.replace(state.model, fim=None), state.engine, state.limits)
