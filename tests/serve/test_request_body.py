"""Every protocol's POST routes read bodies through one reader: unreadable bodies (absurd nesting,
bad UTF-8, no object, lone surrogates) are 400s in the protocol's own shape, never 500s.
`pytest tests/serve/test_request_body.py`."""

from __future__ import annotations

import json
import sys

import pytest

from tests.conftest import required_module

required_module("fastapi")
required_module("uvicorn")

from geex.serve.request_body import RequestError, lone_surrogate, parse_json  # noqa: E402
from geex.serve.state import ServeLimits  # noqa: E402
from tests.serve.tiny_server import call, save_tiny_checkpoint, serving  # noqa: E402

DEEP = b'{"prompt": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"

# Every POST route that reads a JSON body, and where its error message sits in its answer.
ROUTES = {
    "/v1/completions": lambda a: a["error"]["message"],  # OpenAI (and Tabby's bodies)
    "/v1/chat/completions": lambda a: a["error"]["message"],
    "/api/generate": lambda a: a["error"],  # Ollama
    "/api/chat": lambda a: a["error"],
    "/api/show": lambda a: a["error"],
    "/infill": lambda a: a["error"]["message"],  # llama.cpp
    "/completion": lambda a: a["error"]["message"],
    "/v1/tasks/explain": lambda a: a["error"]["message"],
    "/v1/tasks/infill": lambda a: a["error"]["message"],
}


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        (DEEP, "nested too deeply"),
        (b"{not json", "not valid JSON"),
        (b'{"prompt": "\xc3\x28"}', "not valid JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (b"   ", "body is empty"),
        (b'{"a": [{"b": "x"}, {"c": "\\ud800"}]}', "a.1.c: the text is not valid Unicode"),
        # A key holding one is named by its escape: the error must itself be writable JSON.
        (b'{"\\ud800": "x"}', r"\\ud800: the text is not valid Unicode"),
    ],
)
def test_unreadable_bodies_are_request_errors(raw, says):
    with pytest.raises(RequestError, match=says) as refused:
        parse_json(raw)
    assert refused.value.status == 400


def test_an_empty_body_may_mean_an_empty_object():
    assert parse_json(b"", empty={}) == {}


def test_the_surrogate_walk_takes_what_the_parser_takes_beside_the_servers_frames():
    # The parser lets a body nest about as deep as the recursion limit; the walk must not
    # then run out of stack on top of the frames already in use.
    depth = sys.getrecursionlimit() - 50
    nested = json.loads("[" * depth + '"\\ud800"' + "]" * depth)
    assert lone_surrogate(nested) == ".".join(["0"] * depth)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    checkpoint = save_tiny_checkpoint(tmp_path_factory.mktemp("bodies") / "tiny-geex")
    with serving(checkpoint, ServeLimits(max_tokens=4)) as (running, _state):
        yield running


@pytest.mark.parametrize("route", sorted(ROUTES))
@pytest.mark.parametrize(
    ("raw", "says"),
    [
        (DEEP, "nested too deeply"),
        (b"\xff\xfe{", "not valid JSON"),
        (b"[]", "JSON object"),
        (b'{"prompt": "x", "\\ud800": "\\ud800"}', "not valid Unicode"),
    ],
    ids=["deep", "bad-utf8", "list", "surrogate-key"],
)
def test_every_route_refuses_unreadable_bodies_in_its_own_shape(server, route, raw, says):
    status, answer, _ = call(server, route, raw)
    assert status == 400, answer
    assert says in ROUTES[route](answer)
