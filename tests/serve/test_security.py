"""API key, CORS, the body-size bound (413 while /health answers) and the request limits of `geex serve`. `pytest tests/serve/test_security.py`."""

from __future__ import annotations

import json
import re
import socket
import urllib.parse

import pytest

from tests.conftest import required_module

required_module("fastapi")
required_module("uvicorn")

from geex.serve.state import MIB, ServeLimits  # noqa: E402
from tests.serve.tiny_server import call, save_tiny_checkpoint, serving  # noqa: E402

KEY = "k3y-for-tests"
AUTH = {"Authorization": f"Bearer {KEY}"}
ORIGIN = "http://editor.example"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return save_tiny_checkpoint(tmp_path_factory.mktemp("security") / "tiny-geex")


@pytest.fixture(scope="module")
def guarded(checkpoint):
    limits = ServeLimits(api_key=KEY, cors_origins=(ORIGIN,), max_prompt_tokens=32,
                         max_tokens=64, max_n=4, max_streams=1)  # fmt: skip
    with serving(checkpoint, limits) as (server, _state):
        yield server


@pytest.fixture(scope="module")
def open_server(checkpoint):
    with serving(checkpoint) as (server, _state):
        yield server


@pytest.mark.parametrize("path", ["/v1/models", "/v1/completions", "/v1/chat/completions"])
def test_every_api_route_needs_the_key(guarded, path):
    body = None if path == "/v1/models" else {"prompt": "x"}
    for headers, says in [({}, "no API key"), ({"Authorization": "Bearer nope"}, "not valid"),
                          ({"Authorization": KEY}, "not valid")]:  # fmt: skip
        status, answer, got = call(guarded, path, body, headers)
        assert status == 401 and says in answer["error"]["message"], answer
        assert answer["error"]["code"] == "invalid_api_key" and got["WWW-Authenticate"] == "Bearer"


def test_health_and_index_are_open_and_the_key_opens_the_rest(guarded):
    assert call(guarded, "/health")[0] == 200 and call(guarded, "/")[0] == 200
    assert call(guarded, "/v1/models", headers=AUTH)[0] == 200
    assert call(guarded, "/v1/models", headers={"Authorization": f"bearer {KEY}"})[0] == 200
    body = {"prompt": "def f():\n", "max_tokens": 4, "temperature": 0}
    assert call(guarded, "/v1/completions", body, AUTH)[0] == 200


def test_cors_is_off_unless_origins_are_set(open_server, guarded):
    headers = {"Origin": ORIGIN}
    _, _, plain = call(open_server, "/health", headers=headers)
    assert "access-control-allow-origin" not in plain
    _, _, allowed = call(guarded, "/health", headers=headers)
    assert allowed["access-control-allow-origin"] == ORIGIN
    _, _, other = call(guarded, "/health", headers={"Origin": "http://elsewhere.example"})
    assert "access-control-allow-origin" not in other
    # A browser's preflight carries no key: it is answered before the key check.
    preflight = {"Origin": ORIGIN, "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "authorization,content-type"}  # fmt: skip
    status, _, got = _options(guarded, "/v1/completions", preflight)
    assert status == 200 and got["access-control-allow-origin"] == ORIGIN
    assert _options(open_server, "/v1/completions", preflight)[0] == 405


def _options(server, path, headers):
    import urllib.error
    import urllib.request

    request = urllib.request.Request(server.url + path, method="OPTIONS", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read(), response.headers
    except urllib.error.HTTPError as err:
        return err.code, err.read(), err.headers


def _connect(server) -> socket.socket:
    parts = urllib.parse.urlsplit(server.url)
    return socket.create_connection((parts.hostname, parts.port), timeout=30)


def _response(sock: socket.socket) -> tuple[int, dict]:
    """Status and JSON body of the next HTTP response on ``sock``."""
    raw = b""
    while b"\r\n\r\n" not in raw:
        chunk = sock.recv(65536)
        assert chunk, f"the server closed the connection without an answer: {raw!r}"
        raw += chunk
    head, _, body = raw.partition(b"\r\n\r\n")
    length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))
    while len(body) < length:
        body += sock.recv(65536)
    return int(head.split()[1]), json.loads(body)


def test_a_declared_5mb_body_is_a_413_before_it_is_read(open_server):
    with _connect(open_server) as sock:
        sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                     b"\r\nContent-Length: %d\r\n\r\n" % (5 * MIB))  # fmt: skip
        status, answer = _response(sock)  # answered with no byte of the body sent
    assert status == 413 and "--max-body-mb" in answer["error"]["message"]


def test_a_chunked_5mb_body_is_a_413_and_health_answers_while_it_uploads(open_server):
    piece = b"x" * (256 * 1024)
    chunk = b"%x\r\n%s\r\n" % (len(piece), piece)
    with _connect(open_server) as sock:
        sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                     b"\r\nTransfer-Encoding: chunked\r\n\r\n")  # fmt: skip
        sock.sendall(b'8\r\n{"prompt\r\n' + chunk * 4)  # 1 MiB in, the request still open
        status, health, _ = call(open_server, "/health")
        assert status == 200 and health["status"] == "ok"
        sock.sendall(chunk * 16 + b"0\r\n\r\n")  # 4 MiB more: past the bound
        status, answer = _response(sock)
    assert status == 413 and "4 MiB" in answer["error"]["message"]
    assert call(open_server, "/health")[0] == 200


@pytest.mark.parametrize(
    ("path", "body", "param", "flag"),
    [
        ("/v1/completions", {"prompt": "x " * 40}, "prompt", "--max-prompt-tokens"),
        ("/v1/completions", {"prompt": "x", "max_tokens": 65}, "max_tokens", "--max-tokens"),
        ("/v1/completions", {"prompt": ["x", "y"], "n": 3}, "n", "--max-n"),
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": "x " * 40}]},
         "messages", "--max-prompt-tokens"),
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}], "n": 5},
         "n", "--max-n"),
    ],
)  # fmt: skip
def test_each_limit_is_a_400_naming_its_flag(guarded, path, body, param, flag):
    status, answer, _ = call(guarded, path, body, AUTH)
    assert status == 400 and answer["error"]["param"] == param, answer
    assert flag in answer["error"]["message"]


def test_a_fim_prompt_is_cut_to_the_prompt_limit(guarded):
    body = {"prompt": "x = 1\n" * 50, "suffix": "y = 2\n" * 50, "max_tokens": 2}
    status, answer, _ = call(guarded, "/v1/completions", body, AUTH)
    assert status == 200 and answer["usage"]["prompt_tokens"] == 32


def test_streams_over_the_limit_are_a_429_with_retry_after(guarded):
    import urllib.request

    body = {"prompt": "def f():\n", "max_tokens": 64, "temperature": 0, "stream": True}
    request = urllib.request.Request(guarded.url + "/v1/completions",
                                     data=json.dumps(body).encode(), headers=AUTH)  # fmt: skip
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=60) as first:
        first.readline()  # the first event: the stream is open
        status, answer, headers = call(guarded, "/v1/completions", body, AUTH)
        assert status == 429 and "--max-streams" in answer["error"]["message"]
        assert headers["Retry-After"] == "1"
        first.read()
    # The stream's end frees its place.
    with urllib.request.urlopen(request, timeout=60) as again:
        assert again.status == 200 and again.read().endswith(b"data: [DONE]\n\n")


def test_a_protocol_that_lets_a_limit_or_a_full_queue_through_still_answers_4xx(
    checkpoint, monkeypatch
):
    from fastapi import APIRouter

    from geex.serve import server as server_module
    from geex.serve.engine import EngineBusy
    from geex.serve.limits import check_samples

    def careless(state):
        api = APIRouter()

        @api.get("/careless/limit")
        async def limit():
            check_samples(state.limits, 99)

        @api.get("/careless/busy")
        async def busy():
            raise EngineBusy("the server is busy", retry_after=3)

        return api

    monkeypatch.setattr(server_module, "PROTOCOL_ROUTERS", [*server_module.PROTOCOL_ROUTERS,
                                                            careless])  # fmt: skip
    with serving(checkpoint) as (server, _state):
        status, answer, _ = call(server, "/careless/limit")
        assert status == 400 and "--max-n" in answer["error"]["message"]
        status, answer, headers = call(server, "/careless/busy")
        assert status == 429 and headers["Retry-After"] == "3"
