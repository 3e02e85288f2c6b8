"""`--max-streams` counts the streaming responses of every protocol (OpenAI, Ollama, llama.cpp,
tasks) together: at the limit each answers 429 in its own shape with Retry-After, a request
that does not stream is still served, and a finished stream gives its slot back.
`pytest tests/serve/test_stream_limit.py`."""

from __future__ import annotations

import json
import time
import urllib.request

import pytest

from tests.conftest import required_module

required_module("fastapi")
required_module("uvicorn")

from geex.serve.state import ServeLimits  # noqa: E402
from tests.serve.tiny_server import call, save_tiny_checkpoint, serving  # noqa: E402

CODE = "def add(a, b):\n    return a + b\n"
# A streaming request per protocol, and where its error message sits.
STREAMING = {
    "/v1/completions": (
        {"prompt": "def f():\n", "max_tokens": 4, "stream": True},
        lambda a: a["error"]["message"],
    ),
    "/v1/chat/completions": (
        {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4, "stream": True},
        lambda a: a["error"]["message"],
    ),
    "/api/generate": (
        {"model": "tiny-geex", "prompt": "def f():\n", "options": {"num_predict": 4}},
        lambda a: a["error"],  # Ollama streams by default
    ),
    "/api/chat": (
        {
            "model": "tiny-geex",
            "messages": [{"role": "user", "content": "hi"}],
            "options": {"num_predict": 4},
        },
        lambda a: a["error"],
    ),
    "/infill": (
        {"input_prefix": "def f(", "input_suffix": "):\n", "n_predict": 4, "stream": True},
        lambda a: a["error"]["message"],
    ),
    "/completion": (
        {"prompt": "def f():\n", "n_predict": 4, "stream": True},
        lambda a: a["error"]["message"],
    ),
    "/v1/tasks/explain": (
        {"code": CODE, "language": "python", "max_tokens": 4, "stream": True},
        lambda a: a["error"]["message"],
    ),
}


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    checkpoint = save_tiny_checkpoint(tmp_path_factory.mktemp("streams") / "tiny-geex")
    with serving(checkpoint, ServeLimits(max_streams=2)) as running:
        yield running


def read_stream(url: str, body: dict) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST")
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=60) as response:
        return response.status, response.read()


def open_streams(state, expected: int) -> int:
    """The count of open streams once it settles at ``expected`` (the server closes a stream
    just after its last byte reaches the client), or as it is after 10 s."""
    deadline = time.monotonic() + 10
    while state.streams.open != expected and time.monotonic() < deadline:
        time.sleep(0.01)
    return state.streams.open


@pytest.mark.parametrize("route", sorted(STREAMING))
def test_at_the_limit_every_protocols_stream_is_a_429_in_its_shape(served, route):
    server, state = served
    body, message = STREAMING[route]
    for _ in range(state.limits.max_streams):  # streams of other clients fill every slot
        state.streams.acquire()
    try:
        status, answer, headers = call(server, route, body)
        assert status == 429, answer
        assert "--max-streams" in message(answer) and headers["Retry-After"] == "1"
        # The limit is on streams: the same request answered whole is served.
        whole = {**body, "stream": False}
        assert call(server, route, whole)[0] == 200
    finally:
        for _ in range(state.limits.max_streams):
            state.streams.release()


@pytest.mark.parametrize("route", sorted(STREAMING))
def test_a_finished_stream_gives_its_slot_back(served, route):
    server, state = served
    body, _ = STREAMING[route]
    status, raw = read_stream(server.url + route, body)
    assert status == 200 and raw
    assert open_streams(state, 0) == 0
    # One slot left: a stream is still served, and its slot comes back too.
    state.streams.acquire()
    try:
        assert read_stream(server.url + route, body)[0] == 200
        assert open_streams(state, 1) == 1
    finally:
        state.streams.release()
