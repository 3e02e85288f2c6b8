"""Malformed requests against every POST route of every protocol of `geex serve` (OpenAI, Tabby, Ollama, llama.cpp, tasks) get a 4xx in that protocol's shape (or an answer), never a 500, and the server goes on serving. `pytest tests/serve/test_fuzz.py`."""

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

# Each POST route: the fields its bodies have, and fields holding objects of their own fields.
OPENAI_ROUTES = {
    "/v1/completions": [
        "model",
        "prompt",
        "suffix",
        "max_tokens",
        "temperature",
        "top_p",
        "n",
        "stop",
        "stream",
        "stream_options",
        "seed",
        "echo",
        "language",
        "logprobs",
        "best_of",
        "presence_penalty",
        "logit_bias",
    ],
    "/v1/chat/completions": [
        "model",
        "messages",
        "max_tokens",
        "max_completion_tokens",
        "temperature",
        "top_p",
        "n",
        "stop",
        "stream",
        "stream_options",
        "seed",
        "tools",
        "tool_choice",
        "response_format",
        "logprobs",
        "top_logprobs",
        "user",
    ],
}
TASK_OPTIONS = [
    "model",
    "max_tokens",
    "temperature",
    "top_p",
    "top_k",
    "seed",
    "stream",
    "document",
    "language",
    "natural_language",
]
OLLAMA_OPTIONS = ["temperature", "top_p", "top_k", "num_predict", "stop", "seed", "num_ctx"]
SEGMENTS = [
    "prefix",
    "suffix",
    "filepath",
    "git_url",
    "declarations",
    "relevant_snippets_from_changed_files",
    "clipboard",
]
LLAMACPP = [
    "prompt",
    "n_predict",
    "temperature",
    "top_k",
    "top_p",
    "seed",
    "stop",
    "stream",
    "cache_prompt",
]
ROUTES = {
    **OPENAI_ROUTES,
    "tabby": ["language", "segments", "user", "temperature", "seed", "mode"],
    "/v1/events": ["type", "completion_id", "choice_index", "view", "select", "elapsed"],
    "/api/generate": [
        "model",
        "prompt",
        "suffix",
        "system",
        "raw",
        "stream",
        "options",
        "format",
        "images",
        "keep_alive",
        "template",
        "context",
    ],
    "/api/chat": ["model", "messages", "stream", "options", "format", "tools", "keep_alive"],
    "/api/show": ["model", "name", "verbose"],
    "/infill": [*LLAMACPP, "input_prefix", "input_suffix", "input_extra", "filename"],
    "/completion": LLAMACPP,
    "/v1/tasks/complete": [*TASK_OPTIONS, "prefix"],
    "/v1/tasks/infill": [*TASK_OPTIONS, "prefix", "suffix"],
    "/v1/tasks/comment-to-code": [*TASK_OPTIONS, "comment"],
    "/v1/tasks/translate": [*TASK_OPTIONS, "code", "target", "target_start"],
    "/v1/tasks/explain": [*TASK_OPTIONS, "code"],
    "/v1/tasks/comment": [*TASK_OPTIONS, "code"],
    "/v1/tasks/ask": [*TASK_OPTIONS, "question", "context"],
}
NESTED = {"options": OLLAMA_OPTIONS, "segments": SEGMENTS, "stream_options": ["include_usage"]}


def path_of(route: str) -> str:
    return "/v1/completions" if route == "tabby" else route


def error_message(route: str, body, status: int, answer) -> str:
    """The message of a 4xx in the route's own shape (an AssertionError if it has another)."""
    tabby = path_of(route) == "/v1/completions" and is_tabby(body)  # else OpenAI's body
    openai = route in {*OPENAI_ROUTES, "tabby", "/v1/models"} or route.startswith("/v1/tasks/")
    if openai and not tabby:
        assert answer["error"]["type"] == "invalid_request_error", answer
        return answer["error"]["message"]
    if route in ("/infill", "/completion"):  # llama.cpp: {"error": {code, message, type}}
        assert answer["error"]["code"] == status and answer["error"]["type"], answer
        return answer["error"]["message"]
    return answer["error"]  # Ollama's and Tabby's {"error": message}


def is_tabby(body) -> bool:
    return isinstance(body, dict) and "segments" in body and "prompt" not in body


# Few examples per route, as there are many routes: the file stays well under a minute.
FUZZ = settings(
    max_examples=20, deadline=None, database=None, suppress_health_check=list(HealthCheck)
)

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.sampled_from([0, 1, -1, 2**31, 2**63, 10**30])
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=40)
    | st.sampled_from(["\ud800", "\x00", "def f():\n", "python", "cpp", "tiny-geex", "user"])
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def fields_of(names: list[str]):
    """Objects of these fields (and unknown ones) set to anything; nested ones to objects."""
    value_of = {name: st.fixed_dictionaries({}, optional={f: json_values for f in NESTED[name]})
                for name in NESTED}  # fmt: skip
    pairs = st.sampled_from(names).flatmap(
        lambda name: st.tuples(st.just(name), value_of.get(name, json_values) | json_values)
    ) | st.tuples(st.text(max_size=10), json_values)
    return st.lists(pairs, max_size=6).map(dict)


def request_bodies(route: str):
    """Objects of the route's fields (and unknown ones) set to anything, and other JSON."""
    objects = fields_of(ROUTES[route])
    if route == "tabby":  # Tabby's bodies are told from OpenAI's by their segments
        objects = st.builds(lambda segments, rest: {**rest, "segments": segments},
                            fields_of(SEGMENTS) | json_values, objects)  # fmt: skip
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


def assert_answered_well(route: str, body, status: int, raw: bytes) -> None:
    """2xx, or a 4xx whose body is the route's protocol's error with a message."""
    assert status < 500, raw[:500]
    if status >= 400:
        message = error_message(route, body, status, json.loads(raw))
        assert isinstance(message, str) and message, raw[:500]


def dumps(value) -> bytes:
    return json.dumps(value, allow_nan=True).encode("utf-8", "surrogatepass")


def assert_still_serving(server) -> None:
    assert send(server, "/health", None, "GET")[0] == 200
    body = {"prompt": "def f():\n", "max_tokens": 4, "temperature": 0}
    assert send(server, "/v1/completions", dumps(body))[0] == 200


def body_of(data: bytes):
    try:
        return json.loads(data)
    except (ValueError, RecursionError):
        return None


@pytest.mark.parametrize("route", sorted(ROUTES))
def test_fuzzed_json_bodies_get_4xx_or_an_answer(server, route):
    @FUZZ
    @given(request_bodies(route))
    def check(body):
        assert_answered_well(route, body, *send(server, path_of(route), dumps(body)))

    check()
    assert_still_serving(server)


@pytest.mark.parametrize("route", [*sorted(ROUTES), "/v1/models"])
def test_fuzzed_bytes_get_4xx_or_an_answer(server, route):
    valid = dumps({"prompt": "x", "messages": [{"role": "user", "content": "x"}]})

    @FUZZ
    @given(st.binary(max_size=200) | st.integers(0, len(valid)).map(lambda n: valid[:n]))
    def check(data):
        assert_answered_well(route, body_of(data), *send(server, path_of(route), data))

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


@pytest.mark.parametrize("route", sorted(OPENAI_ROUTES))
@pytest.mark.parametrize("data", FIXED, ids=range(len(FIXED)))
def test_malformed_bodies_get_4xx(server, route, data):
    status, raw = send(server, route, data)
    assert 400 <= status < 500, raw[:500]
    assert_answered_well(route, body_of(data), status, raw)


@pytest.mark.parametrize("route", sorted(set(ROUTES) - set(OPENAI_ROUTES)))
def test_the_other_protocols_answer_the_malformed_bodies_well(server, route):
    # One test per route, the bodies in a loop: what is malformed for OpenAI may be a fine
    # request elsewhere, but each is answered, never with a 500.
    for data in FIXED:
        assert_answered_well(route, body_of(data), *send(server, path_of(route), data))
    assert_still_serving(server)


# The other protocols get the bodies that are cheap to refuse or to read past (tokenizing a
# MiB of prompt takes seconds; the OpenAI routes already show that it is answered).
LARGE_CASES = [(route, i) for route in sorted(OPENAI_ROUTES) for i in range(len(LARGE))] + [
    (route, i) for route in ("/api/generate", "/infill", "/v1/tasks/explain") for i in (1, 3)
]


@pytest.mark.parametrize(("route", "index"), LARGE_CASES)
def test_1mib_bodies_are_answered(server, route, index):
    data = LARGE[index]
    assert_answered_well(route, body_of(data), *send(server, route, data))


def test_the_server_serves_after_the_malformed_bodies(server):
    assert_still_serving(server)
