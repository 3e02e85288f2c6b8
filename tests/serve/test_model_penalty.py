"""A model folder's own repetition penalty (its ``generation_config.json``) is what every
protocol decodes with when a request names none, and a request's own penalty wins."""

from __future__ import annotations

import json

import pytest

from geex.model.generation_defaults import write_generation_defaults
from tests.serve.editor_server import expected_text, post, save_tiny_model, serving_state

PENALTY = 3.0  # strong enough to change the tiny random model's greedy text
PROMPT = "def add(a, b):\n"


@pytest.fixture(scope="module")
def state(tmp_path_factory):
    folder = save_tiny_model(tmp_path_factory.mktemp("penalty") / "tiny-geex")
    write_generation_defaults(folder, {"repetition_penalty": PENALTY})
    served = serving_state(folder)
    yield served
    served.engine.close()


@pytest.fixture(scope="module")
def texts(state):
    ids = state.model.codec.encode(PROMPT)
    plain = expected_text(state, ids, max_tokens=16)
    own = expected_text(state, ids, max_tokens=16, repetition_penalty=PENALTY)
    assert own != plain, "the penalty must change the greedy text for these tests to mean much"
    return {"plain": plain, "own": own}


def test_the_served_model_knows_its_penalty(state):
    assert state.model.repetition_penalty == PENALTY


def test_openai_completions(server, texts):
    def answer(**fields):
        body = {"prompt": PROMPT, "max_tokens": 16, "temperature": 0, **fields}
        status, raw, _ = post(server.url + "/v1/completions", body)
        assert status == 200, raw
        return json.loads(raw)["choices"][0]["text"]

    assert answer() == texts["own"]
    assert answer(repetition_penalty=None) == texts["own"]  # null is unset, as OpenAI's spec
    assert answer(repetition_penalty=1.0) == texts["plain"]


def test_ollama_generate(server, texts):
    def answer(**options):
        body = {"model": "tiny-geex", "prompt": PROMPT, "stream": False, "raw": True,
                "options": {"temperature": 0, "num_predict": 16, **options}}  # fmt: skip
        status, raw, _ = post(server.url + "/api/generate", body)
        assert status == 200, raw
        return json.loads(raw)["response"]

    assert answer() == texts["own"]  # the model's, not Ollama's 1.1
    assert answer(repeat_penalty=1.0) == texts["plain"]


def test_ollama_show_lists_the_penalty_as_a_parameter(server):
    status, raw, _ = post(server.url + "/api/show", {"model": "tiny-geex"})
    assert status == 200, raw
    assert json.loads(raw)["parameters"] == f"repeat_penalty {PENALTY:g}"


def test_llamacpp_completion(server, texts):
    def answer(**fields):
        body = {"prompt": PROMPT, "n_predict": 16, "temperature": 0, **fields}
        status, raw, _ = post(server.url + "/completion", body)
        assert status == 200, raw
        return json.loads(raw)["content"]

    assert answer() == texts["own"]
    assert answer(repeat_penalty=1.0) == texts["plain"]
