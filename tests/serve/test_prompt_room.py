"""Editor prompts (infills, whole files) are cut to leave room to generate, by one rule for
every protocol and the tasks; a cut prompt keeps its leading ids (a Llama-family BOS).
`pytest tests/serve/test_prompt_room.py`."""

from __future__ import annotations

import dataclasses
import json

import pytest

from tests.conftest import required_module

required_module("fastapi")
required_module("uvicorn")

from geex.serve.infill import cut_left  # noqa: E402
from geex.serve.limits import LimitExceeded, allowed_max_tokens, prompt_room  # noqa: E402
from geex.serve.server import BackgroundServer, create_app  # noqa: E402
from geex.serve.state import ServeLimits, ServerState  # noqa: E402
from tests.serve.editor_server import post  # noqa: E402

CONTEXT = 256  # the tiny model's
PREFIX = "def add(a, b):\n    return a + b\n\n" * 200  # far over the context
SUFFIX = "\n\nprint(add(1, 2))\n" * 50


@pytest.fixture
def submitted(state, monkeypatch) -> list[tuple[int, int]]:
    """(prompt length, max_tokens) of every sequence the engine is handed."""
    seen = []
    submit = state.engine.submit

    def recording_submit(ids, params, *, n=1, document=None):
        seen.append((len(ids), params.max_tokens))
        return submit(ids, params, n=n, document=document)

    monkeypatch.setattr(state.engine, "submit", recording_submit)
    return seen


def test_the_room_leaves_max_tokens_to_generate_but_at_least_half_the_budget(state):
    assert state.model.context_length == CONTEXT
    assert prompt_room(state, 64) == CONTEXT - 64
    assert prompt_room(state, 1) == CONTEXT - 1
    assert prompt_room(state, 10_000) == (CONTEXT - 1) // 2
    bounded = ServerState(state.model, state.engine, ServeLimits(max_prompt_tokens=100))
    assert prompt_room(bounded, 64) == 100  # the bound leaves room already
    assert prompt_room(bounded, 200) == 56  # the context leaves 56


def test_a_cut_keeps_the_leading_ids():
    assert cut_left([1, 5, 6, 7, 8], 3, leading=(1,)) == [1, 7, 8]
    assert cut_left([5, 6, 7, 8], 2, leading=(1,)) == [7, 8]  # no BOS to keep
    assert cut_left([1, 5, 6], 5, leading=(1,)) == [1, 5, 6]
    assert cut_left([5, 6, 7], 2) == [6, 7]


def test_a_plain_prompt_cut_by_an_editor_route_keeps_its_bos(state, monkeypatch):
    bos = 3
    codec, tokens = state.model.codec, state.model.tokens

    class Bos:  # the codec and tokens of a tokenizer that puts a BOS before every prompt
        leading_ids = (bos,)

        def encode(self, text):
            return [bos, *codec.encode(text)]

        def __getattr__(self, name):
            return getattr(codec if hasattr(codec, name) else tokens, name)

    model = dataclasses.replace(state.model, codec=Bos(), tokens=Bos())
    seen_ids = []
    submit = state.engine.submit

    def recording(ids, params, *, n=1, document=None):
        seen_ids.append(list(ids))
        return submit(ids, params, n=n, document=document)

    monkeypatch.setattr(state.engine, "submit", recording)
    with BackgroundServer(create_app(ServerState(model, state.engine, state.limits))) as bos_server:
        status, _, _ = post(bos_server.url + "/completion", {"prompt": PREFIX, "n_predict": 8})
    assert status == 200
    [ids] = seen_ids
    assert ids[0] == bos and len(ids) == CONTEXT - 8


@pytest.mark.parametrize(
    ("path", "body", "max_tokens"),
    [
        ("/v1/completions", {"prompt": PREFIX, "suffix": SUFFIX, "max_tokens": 32}, 32),
        ("/v1/completions", {"segments": {"prefix": PREFIX, "suffix": SUFFIX}}, 64),
        ("/v1/completions", {"segments": {"prefix": PREFIX}}, 64),
        (
            "/api/generate",
            {
                "model": "tiny-geex",
                "prompt": PREFIX,
                "suffix": SUFFIX,
                "stream": False,
                "options": {"num_predict": 40},
            },
            40,
        ),
        (
            "/api/generate",
            {
                "model": "tiny-geex",
                "prompt": PREFIX,
                "raw": True,
                "stream": False,
                "options": {"num_predict": 40},
            },
            40,
        ),
        ("/infill", {"input_prefix": PREFIX, "input_suffix": SUFFIX, "n_predict": 24}, 24),
        ("/completion", {"prompt": PREFIX, "n_predict": 24}, 24),
        ("/v1/tasks/infill", {"prefix": PREFIX, "suffix": SUFFIX, "max_tokens": 48}, 48),
    ],
)
def test_every_route_leaves_max_tokens_to_generate(server, submitted, path, body, max_tokens):
    status, raw, _ = post(server.url + path, body)
    assert status == 200, raw
    [(prompt_length, asked)] = submitted
    assert asked == max_tokens
    assert prompt_length == CONTEXT - max_tokens  # cut to fit, and no shorter


def test_a_plain_openai_completion_over_the_context_is_still_a_400(server):
    status, raw, _ = post(server.url + "/v1/completions", {"prompt": PREFIX, "max_tokens": 8})
    assert status == 400
    assert json.loads(raw)["error"]["code"] == "context_length_exceeded"


def test_the_editor_protocols_cap_max_tokens_and_openai_and_tasks_refuse(state):
    limits = ServeLimits(max_tokens=100)
    assert allowed_max_tokens(limits, None, cap=True) == 100
    assert allowed_max_tokens(limits, -1, cap=True) == 100  # Ollama's and llama.cpp's "no limit"
    assert allowed_max_tokens(limits, 500, cap=True) == 100
    assert allowed_max_tokens(limits, 50, cap=False) == 50
    with pytest.raises(LimitExceeded, match="geex serve --max-tokens"):
        allowed_max_tokens(limits, 500, cap=False)


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/completions", {"segments": {"prefix": "x = "}}),  # Tabby: its own 64, capped
        (
            "/api/generate",
            {
                "model": "tiny-geex",
                "prompt": "x = ",
                "raw": True,
                "stream": False,
                "options": {"num_predict": 100_000},
            },
        ),
        (
            "/api/generate",
            {
                "model": "tiny-geex",
                "prompt": "x = ",
                "raw": True,
                "stream": False,
                "options": {"num_predict": -1},
            },
        ),
        ("/completion", {"prompt": "x = ", "n_predict": 100_000}),
        ("/infill", {"input_prefix": "x = ", "input_suffix": "\n", "n_predict": -1}),
    ],
)
def test_editor_routes_cap_max_tokens(state, path, body, monkeypatch):
    seen = []
    submit = state.engine.submit

    def recording_submit(ids, params, *, n=1, document=None):
        seen.append(params.max_tokens)
        return submit(ids, params, n=n, document=document)

    monkeypatch.setattr(state.engine, "submit", recording_submit)
    capped = ServerState(state.model, state.engine, ServeLimits(max_tokens=8))
    with BackgroundServer(create_app(capped)) as running:
        status, raw, _ = post(running.url + path, body)
    assert status == 200, raw
    assert seen == [8]


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/completions", {"prompt": "x = ", "max_tokens": 9}),
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}], "max_tokens": 9}),
        ("/v1/tasks/complete", {"prefix": "x = ", "max_tokens": 9}),
    ],
)
def test_openai_and_task_routes_refuse_max_tokens_over_the_limit(state, path, body):
    capped = ServerState(state.model, state.engine, ServeLimits(max_tokens=8))
    with BackgroundServer(create_app(capped)) as running:
        status, raw, _ = post(running.url + path, body)
    assert status == 400
    assert "geex serve --max-tokens" in json.loads(raw)["error"]["message"]
