"""16 concurrent streaming clients on `geex serve` finish without errors and leave memory where a warm-up left it; a client that hangs up cancels its sequences. `pytest tests/serve/test_load.py`."""

from __future__ import annotations

import json
import os
import socket
import time
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.conftest import required_module

required_module("fastapi")
required_module("uvicorn")

from tests.serve.tiny_server import call, save_tiny_checkpoint, serving  # noqa: E402

CLIENTS = 16
PROMPTS = ["def add(a, b):\n", "int main() {\n    int x = ", "class Stack:\n", "for i in "]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    checkpoint = save_tiny_checkpoint(tmp_path_factory.mktemp("load") / "tiny-geex")
    with serving(checkpoint) as running:
        yield running


def open_stream(server, body: dict, path: str = "/v1/completions"):
    request = urllib.request.Request(server.url + path, data=json.dumps(body).encode())
    request.add_header("Content-Type", "application/json")
    return urllib.request.urlopen(request, timeout=120)


def streamed_text(server, i: int) -> str:
    """One client's whole stream, checked event by event; its text."""
    chat = i % 2 == 1
    prompt = PROMPTS[i % len(PROMPTS)]
    body = {"max_tokens": 24, "temperature": 0.8, "seed": i, "stream": True}
    body |= {"messages": [{"role": "user", "content": prompt}]} if chat else {"prompt": prompt}
    path = "/v1/chat/completions" if chat else "/v1/completions"
    with open_stream(server, body, path) as response:
        raw = response.read().decode()
    events = raw.split("\n\n")
    assert events[-2:] == ["data: [DONE]", ""], raw[-300:]
    chunks = [json.loads(e.removeprefix("data: ")) for e in events[:-2]]
    assert all("error" not in c for c in chunks), raw[:300]
    assert chunks[-1]["choices"][0]["finish_reason"] in ("stop", "length")
    if chat:
        return "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    return "".join(c["choices"][0]["text"] for c in chunks)


def one_round(server) -> list[str]:
    with ThreadPoolExecutor(CLIENTS) as pool:
        return list(pool.map(lambda i: streamed_text(server, i), range(CLIENTS)))


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="reads RSS from /proc")
def test_16_concurrent_streams_finish_cleanly_and_memory_settles(served):
    server, state = served
    warm = one_round(server)
    after_warm_up = rss_bytes()
    for _ in range(3):
        assert one_round(server) == warm  # seeded: the same texts, whatever the interleaving
    assert rss_bytes() < after_warm_up + 50 * 1024 * 1024
    wait_idle(server)  # every stream's place is given back once its response has ended
    assert state.streams.open == 0


def count_decode_steps(state, monkeypatch, delay: float) -> list[int]:
    """Slow the runner's decode step down and count the steps taken."""
    steps = [0]
    decode = state.engine.runner.decode

    def slow_decode(*args, **kwargs):
        steps[0] += 1
        time.sleep(delay)
        return decode(*args, **kwargs)

    monkeypatch.setattr(state.engine.runner, "decode", slow_decode)
    return steps


def wait_idle(server, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        engine = call(server, "/health")[1]["engine"]
        if engine["running"] == 0 and engine["queued"] == 0 and engine["streams"] == 0:
            return
        time.sleep(0.05)
    raise AssertionError(f"the engine is still busy: {engine}")


@pytest.mark.parametrize("stream", [True, False])
def test_a_client_that_hangs_up_cancels_its_sequences(served, monkeypatch, stream):
    server, state = served
    steps = count_decode_steps(state, monkeypatch, delay=0.02)
    body = json.dumps({"prompt": "def f():\n", "max_tokens": 200, "temperature": 0.8,
                       "seed": 1, "n": 2, "stream": stream}).encode()  # fmt: skip
    parts = urllib.parse.urlsplit(server.url)
    with socket.create_connection((parts.hostname, parts.port), timeout=60) as sock:
        sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: "
                     b"application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))  # fmt: skip
        if stream:
            received = b""
            while b"data: " not in received:  # the stream has begun
                chunk = sock.recv(65536)
                assert chunk, received
                received += chunk
        else:
            while steps[0] < 3:  # decoding has begun
                time.sleep(0.01)
    wait_idle(server)
    # Not cancelled, two samples of 200 tokens would take 400 steps.
    assert steps[0] < 200, steps[0]
