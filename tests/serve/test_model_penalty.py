"""A model folder's own repetition penalty (its ``generation_config.json``) is what every
protocol decodes with when a request names none, and a request's own penalty wins.
`pytest tests/serve/test_model_penalty.py`."""

from __future__ import annotations

import json
import shutil

import pytest

from geex.model.generation_defaults import GENERATION_CONFIG, save_repetition_penalty
from tests.serve.editor_server import expected_text, post, save_tiny_model, serving_state

PENALTY = 3.0  # strong enough to change the tiny random model's greedy text
PROMPT = "def add(a, b):\n"
GREEDY_OLLAMA = {"temperature": 0, "num_predict": 16}


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """The same tiny model twice: with a penalty of its own, and without."""
    root = tmp_path_factory.mktemp("penalty")
    own = save_tiny_model(root / "tiny-geex")
    plain = shutil.copytree(own, root / "plain" / "tiny-geex")
    save_repetition_penalty(own, PENALTY)
    assert not (plain / GENERATION_CONFIG).exists()
    return own, plain


@pytest.fixture(scope="module")
def state(folders):
    served = serving_state(folders[0])
    yield served
    served.engine.close()


@pytest.fixture(scope="module")
def plain_server(folders):
    from geex.serve.server import BackgroundServer, create_app

    plain = serving_state(folders[1])
    with BackgroundServer(create_app(plain)) as running:
        yield running
    plain.engine.close()


@pytest.fixture(scope="module")
def texts(state):
    ids = state.model.codec.encode(PROMPT)
    plain = expected_text(state, ids, max_tokens=16)
    own = expected_text(state, ids, max_tokens=16, repetition_penalty=PENALTY)
    assert own != plain, "the penalty must change the greedy text for these tests to mean much"
    return {"plain": plain, "own": own}


def answer(server, path: str, body: dict, *keys):
    status, raw, _ = post(server.url + path, body)
    assert status == 200, raw
    value = json.loads(raw)
    for key in keys:
        value = value[key]
    return value


def test_the_served_model_knows_its_penalty(state):
    assert state.model.repetition_penalty == PENALTY


def test_openai_completions(server, texts):
    def text(**fields):
        body = {"prompt": PROMPT, "max_tokens": 16, "temperature": 0, **fields}
        return answer(server, "/v1/completions", body, "choices", 0, "text")

    assert text() == texts["own"]
    assert text(repetition_penalty=None) == texts["own"]  # null is unset, as OpenAI's spec
    assert text(repetition_penalty=1.0) == texts["plain"]


def test_ollama_generate(server, texts):
    def text(**options):
        body = {"model": "tiny-geex", "prompt": PROMPT, "stream": False, "raw": True,
                "options": {**GREEDY_OLLAMA, **options}}  # fmt: skip
        return answer(server, "/api/generate", body, "response")

    assert text() == texts["own"]  # the model's, not Ollama's 1.1
    assert text(repeat_penalty=1.0) == texts["plain"]
    assert text(repeat_last_n=0) == texts["plain"]  # Ollama's "no penalty"


def test_ollama_show_lists_the_penalty_as_a_parameter(server, plain_server):
    show = {"model": "tiny-geex"}
    assert answer(server, "/api/show", show, "parameters") == f"repeat_penalty {PENALTY:g}"
    assert answer(plain_server, "/api/show", show, "parameters") == ""


def test_llamacpp_completion(server, texts):
    def text(**fields):
        body = {"prompt": PROMPT, "n_predict": 16, "temperature": 0, **fields}
        return answer(server, "/completion", body, "content")

    assert text() == texts["own"]
    assert text(repeat_penalty=1.0) == texts["plain"]


# The routes below are checked against the same weights served without a penalty of their
# own: unset, they answer as that server answers when asked for the penalty, and otherwise
# than it answers unasked. Tabby's and the tasks' requests have no penalty field at all.
def test_chats_and_fill_in_the_middle(server, plain_server):
    chat = {"messages": [{"role": "user", "content": "add two numbers"}]}
    routes = [
        ("/v1/chat/completions", {**chat, "max_tokens": 16, "temperature": 0},
         ("choices", 0, "message", "content"), {"repetition_penalty": PENALTY}),
        ("/api/chat", {**chat, "model": "tiny-geex", "stream": False, "options": GREEDY_OLLAMA},
         ("message", "content"), {"options": {**GREEDY_OLLAMA, "repeat_penalty": PENALTY}}),
        ("/infill", {"input_prefix": PROMPT, "input_suffix": "\nprint(1)\n", "n_predict": 16,
                     "temperature": 0}, ("content",), {"repeat_penalty": PENALTY}),
    ]  # fmt: skip
    for path, body, keys, asked in routes:
        own = answer(server, path, body, *keys)
        assert own == answer(plain_server, path, {**body, **asked}, *keys), path
        assert own != answer(plain_server, path, body, *keys), path


def test_tabby_and_the_tasks(server, plain_server):
    tabby = {"language": "python", "segments": {"prefix": PROMPT + "    ", "suffix": "\n"}}
    routes = [
        ("/v1/completions", tabby, ("choices", 0, "text")),
        ("/v1/tasks/complete", {"prefix": PROMPT, "language": "python", "max_tokens": 16},
         ("text",)),
    ]  # fmt: skip
    for path, body, keys in routes:
        assert answer(server, path, body, *keys) != answer(plain_server, path, body, *keys), path
