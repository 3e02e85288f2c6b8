"""Malformed requests against every OpenAI route of `geex serve` get a 4xx in OpenAI's shape, never a 500, and the server goes on serving. `pytest tests/serve/test_fuzz.py`."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from tests.conftest import required_module

required_module("fastapi")
required_module("uvicorn")
hypothesis = pytest.importorskip("hypothesis")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from geex.serve.state import ServeLimits  # noqa: E402
from tests.serve.tiny_server import save_tiny_checkpoint, serving  # noqa: E402

ROUTES = {
    "/v1/completions": ["model", "prompt", "suffix", "max_tokens", "temperature", "top_p", "n",
                        "stop", "stream", "stream_options", "seed", "echo", "language",
                        "logprobs", "best_of", "presence_penalty", "logit_bias"],
    "/v1/chat/completions": ["model", "messages", "max_tokens", "max_completion_tokens",
                             "temperature", "top_p", "n", "stop", "stream", "stream_options",
                             "seed", "tools", "tool_choice", "response_format", "logprobs",
                             "top_logprobs", "user"],
}  # fmt: skip
FUZZ = settings(
    max_examples=60, deadline=None, database=None, suppress_health_check=list(HealthCheck)
)

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.sampled_from([0, 1, -1, 2**31, 2**63, 10**30])
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=40)
    | st.sampled_from(["\ud800", "\x00", "def f():\n", "python", "tiny-geex", "user"])
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def request_bodies(route: str):
    """Objects of the route's fields (and unknown ones) set to anything, and other JSON."""
    fields = st.sampled_from(ROUTES[route]) | st.text(max_size=10)
    objects = st.dictionaries(fields, json_values, max_size=6)
    messages = st.lists(st.fixed_dictionaries({"role": st.sampled_from(["user", "system", 7]),
                                               "content": json_values}), max_size=3)  # fmt: skip
    chat = st.builds(lambda m, extra: {"messages": m, **extra}, messages, objects)
    return objects | chat | json_values


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    checkpoint = save_tiny_checkpoint(tmp_path_factory.mktemp("fuzz") / "tiny-geex")
    with serving(checkpoint, ServeLimits(max_tokens=16, max_n=4)) as (running, _state):
        yield running


def send(server, path: str, data: bytes, method: str = "POST") -> tuple[int, bytes]:
    request = urllib.request.Request(server.url + path, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def assert_answered_well(status: int, raw: bytes) -> None:
    """2xx, or a 4xx whose body is OpenAI's error object with a message."""
    assert status < 500, raw[:500]
    if status >= 400:
        error = json.loads(raw)["error"]
        assert isinstance(error["message"], str) and error["message"], raw[:500]
        assert error["type"] == "invalid_request_error"


def dumps(value) -> bytes:
    return json.dumps(value, allow_nan=True).encode("utf-8", "surrogatepass")


def assert_still_serving(server) -> None:
    assert send(server, "/health", None, "GET")[0] == 200
    body = {"prompt": "def f():\n", "max_tokens": 4, "temperature": 0}
    assert send(server, "/v1/completions", dumps(body))[0] == 200


@pytest.mark.parametrize("route", sorted(ROUTES))
def test_fuzzed_json_bodies_get_4xx_or_an_answer(server, route):
    @FUZZ
    @given(request_bodies(route))
    def check(body):
        assert_answered_well(*send(server, route, dumps(body)))

    check()
    assert_still_serving(server)


@pytest.mark.parametrize("route", [*sorted(ROUTES), "/v1/models"])
def test_fuzzed_bytes_get_4xx_or_an_answer(server, route):
    valid = dumps({"prompt": "x", "messages": [{"role": "user", "content": "x"}]})

    @FUZZ
    @given(st.binary(max_size=200) | st.integers(0, len(valid)).map(lambda n: valid[:n]))
    def check(data):
        assert_answered_well(*send(server, route, data))

    check()
    assert_still_serving(server)


MIB = 1024 * 1024
FIXED = [
    b"",
    b"null",
    b"[]",
    b'[{"prompt": "x"}]',
    b"\xff\xfe\x00{",
    b'{"prompt": "\xc3\x28"}',  # invalid UTF-8 inside a string
    b'{"prompt": "x", "temperature": NaN}',
    b'{"prompt": "x", "top_p": Infinity}',
    b'{"prompt": "x", "max_tokens": 1e400}',
    b'{"prompt": "x", "n": 99999999999999999999999999}',
    b'{"prompt": "x", "seed": -1}',
    b'{"prompt": "x", "stop": [""]}',
    b'{"prompt": "x", "stop": {"a": 1}}',
    b'{"messages": {"role": "user"}}',
    b'{"messages": [{"role": "user", "content": [{"type": "text"}]}]}',
    b'{"prompt": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",  # deep nesting
]
LARGE = [
    b'{"prompt": "' + b"def f(x):\\n    return x\\n" * (MIB // 24) + b'"}',  # over the context
    b'{"prompt": "x", "user": "' + b"u" * MIB + b'", "max_tokens": 2}',  # in an ignored field
    b'{"messages": [{"role": "user", "content": "' + b"w " * (MIB // 2) + b'"}]}',
    b'{"prompt": "' + b"\\ud800" * (MIB // 6) + b'"}',  # lone surrogates
]


@pytest.mark.parametrize("route", sorted(ROUTES))
@pytest.mark.parametrize("data", FIXED, ids=range(len(FIXED)))
def test_malformed_bodies_get_4xx(server, route, data):
    status, raw = send(server, route, data)
    assert 400 <= status < 500, raw[:500]
    assert_answered_well(status, raw)


@pytest.mark.parametrize("route", sorted(ROUTES))
@pytest.mark.parametrize("data", LARGE, ids=range(len(LARGE)))
def test_1mib_bodies_are_answered(server, route, data):
    assert_answered_well(*send(server, route, data))


def test_the_server_serves_after_the_malformed_bodies(server):
    assert_still_serving(server)
