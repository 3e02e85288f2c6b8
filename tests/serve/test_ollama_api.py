"""Ollama's API over real HTTP with requests as Continue and the ollama client send them:
NDJSON streaming by default, FIM with ``suffix``, options, chat, tags, show, version, errors.
`pytest tests/serve/test_ollama_api.py`."""

from __future__ import annotations

import dataclasses
import json
import urllib.request

import pytest

from tests.conftest import required_module

required_module("fastapi")
required_module("uvicorn")

from geex.serve.server import BackgroundServer, create_app  # noqa: E402
from geex.serve.state import ServeLimits, ServerState  # noqa: E402
from tests.serve.editor_server import (  # noqa: E402
    expected_text,
    get,
    post,
    without_fim,
)

GREEDY = {"temperature": 0, "num_predict": 24}
CHATML = (
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
# Ollama penalises repeats unless told not to: repeat_penalty 1.1 over the last 64 tokens.
OLLAMA_REPEAT = {"repetition_penalty": 1.1, "repetition_window": 64}


def call(server, path, body) -> tuple[int, bytes, dict]:
    return post(server.url + path, body)


def lines(raw: bytes) -> list[dict]:
    return [json.loads(line) for line in raw.decode().splitlines()]


def test_generate_streams_ndjson_by_default(server, state):
    body = {"model": "tiny-geex", "prompt": "def add(a, b):\n", "options": GREEDY}
    status, raw, headers = call(server, "/api/generate", body)
    assert status == 200
    assert headers["content-type"].startswith("application/x-ndjson")
    *parts, last = lines(raw)
    assert parts and all(p["done"] is False and p["model"] == "tiny-geex" for p in parts)
    assert all(p["created_at"].endswith("Z") for p in parts)
    expected = expected_text(
        state, state.model.codec.encode("def add(a, b):\n"), max_tokens=24, **OLLAMA_REPEAT
    )
    assert "".join(p["response"] for p in parts) == expected
    assert last["done"] is True and last["response"] == ""
    assert last["done_reason"] in ("stop", "length")
    assert last["prompt_eval_count"] == len(state.model.codec.encode("def add(a, b):\n"))
    assert 1 <= last["eval_count"] <= 24
    assert last["total_duration"] >= last["eval_duration"] >= 0


def test_repeat_penalty_is_ollamas_unless_the_options_say_otherwise(server, state):
    ids = state.model.codec.encode("def add(a, b):\n")

    def answer(**options):
        body = {"model": "tiny-geex", "prompt": "def add(a, b):\n", "stream": False,
                "options": {**GREEDY, **options}}  # fmt: skip
        status, raw, _ = call(server, "/api/generate", body)
        assert status == 200, raw
        return json.loads(raw)["response"]

    plain = expected_text(state, ids, max_tokens=24)
    assert answer() != plain  # the 1.1 default changes this model's greedy text
    assert answer(repeat_penalty=1.0) == plain
    assert answer(repeat_last_n=0) == plain
    assert answer(repeat_penalty=2.0, repeat_last_n=8) == expected_text(
        state, ids, max_tokens=24, repetition_penalty=2.0, repetition_window=8
    )


def test_generate_with_suffix_fills_in_the_middle(server, state):
    # Continue's autocomplete request to Ollama: raw FIM through prompt + suffix.
    body = {"model": "tiny-geex", "prompt": "def add(a, b):\n    ", "suffix": "\n\nprint(1)\n",
            "stream": False, "raw": True, "keep_alive": 1800, "options": GREEDY}  # fmt: skip
    status, raw, headers = call(server, "/api/generate", body)
    assert status == 200 and headers["content-type"] == "application/json"
    answer = json.loads(raw)
    ids = state.model.fim_prompt_ids(
        "def add(a, b):\n    ", "\n\nprint(1)\n", max_prompt_tokens=255
    )
    assert answer["response"] == expected_text(state, ids, max_tokens=24, **OLLAMA_REPEAT)
    assert answer["done"] is True and answer["prompt_eval_count"] == len(ids)


def test_options_stop_and_num_predict(server, state):
    ids = state.model.codec.encode("int main() {\n")
    full = expected_text(state, ids, max_tokens=24, **OLLAMA_REPEAT)
    assert len(full) > 4
    stop = full[2:4]
    body = {"model": "tiny-geex", "prompt": "int main() {\n", "stream": False,
            "options": {**GREEDY, "stop": [stop]}}  # fmt: skip
    answer = json.loads(call(server, "/api/generate", body)[1])
    assert answer["response"] == full[: full.index(stop)]
    assert answer["done_reason"] == "stop"
    body["options"] = {"temperature": 0, "num_predict": 3}
    answer = json.loads(call(server, "/api/generate", body)[1])
    assert answer["eval_count"] <= 3


def test_seeded_sampling_is_reproducible(server):
    body = {"model": "tiny-geex", "prompt": "x = ", "stream": False,
            "options": {"temperature": 1.0, "seed": 5, "num_predict": 12}}  # fmt: skip
    first = json.loads(call(server, "/api/generate", body)[1])["response"]
    assert json.loads(call(server, "/api/generate", body)[1])["response"] == first


def test_system_goes_before_the_prompt_unless_raw(server, state):
    body = {"model": "tiny-geex", "prompt": "x = ", "system": "# numbers", "stream": False,
            "options": GREEDY}  # fmt: skip
    answer = json.loads(call(server, "/api/generate", body)[1])
    ids = state.model.codec.encode("# numbers\n\nx = ")
    assert answer["response"] == expected_text(state, ids, max_tokens=24, **OLLAMA_REPEAT)


def test_empty_prompt_loads_the_model(server):
    status, raw, _ = call(server, "/api/generate", {"model": "tiny-geex"})
    assert status == 200
    assert json.loads(raw)["done_reason"] == "load"


def test_chat_streams_message_pieces(server, state):
    messages = [{"role": "user", "content": "Write add in Python."}]
    body = {"model": "tiny-geex", "messages": messages, "options": GREEDY}
    status, raw, _ = call(server, "/api/chat", body)
    assert status == 200
    *parts, last = lines(raw)
    assert all(p["message"]["role"] == "assistant" and not p["done"] for p in parts)
    ids = state.model.chat_prompt_ids(messages)
    expected = expected_text(state, ids, max_tokens=24, **OLLAMA_REPEAT)
    assert "".join(p["message"]["content"] for p in parts) == expected
    assert last["done"] is True and last["message"] == {"role": "assistant", "content": ""}
    body["stream"] = False
    answer = json.loads(call(server, "/api/chat", body)[1])
    assert answer["message"]["content"] == expected


def test_tags_show_and_version(server):
    status, tags = get(server.url + "/api/tags")
    assert status == 200
    [entry] = tags["models"]
    assert entry["name"] == entry["model"] == "tiny-geex"
    assert set(entry["details"]) >= {"format", "family", "parameter_size", "quantization_level"}
    status, raw, _ = call(server, "/api/show", {"model": "tiny-geex"})
    shown = json.loads(raw)
    assert status == 200
    assert shown["capabilities"] == ["completion", "insert"]
    assert shown["model_info"]["geex.context_length"] == 256
    assert call(server, "/api/show", {"name": "tiny-geex:latest"})[0] == 200
    status, version = get(server.url + "/api/version")
    assert status == 200 and version["version"].count(".") == 2


@pytest.mark.parametrize(
    ("path", "body", "status", "message"),
    [
        ("/api/generate", {"model": "llama3", "prompt": "x"}, 404, "model 'llama3' not found"),
        ("/api/show", {"model": "llama3"}, 404, "model 'llama3' not found"),
        ("/api/generate", {"prompt": "x"}, 400, "model: Field required"),
        ("/api/generate", {"model": "tiny-geex", "prompt": "x", "options": {"top_p": 2}}, 400,
         "top_p must be in (0, 1]"),
        ("/api/generate", {"model": "tiny-geex", "prompt": "x", "options": {"num_predict": "many"}},
         400, "options.num_predict: Input should be a valid integer"),
        ("/api/chat", {"model": "tiny-geex", "messages": []}, 400, "at least one message"),
        ("/api/chat", b"[1, 2]", 400, "must be a JSON object"),
        ("/api/generate", {"model": "tiny-geex", "prompt": "x", "format": "json"}, 400,
         "format: structured (JSON) output is not supported"),
        ("/api/generate", {"model": "tiny-geex", "prompt": "x", "images": ["aGk="]}, 400,
         "images: the served model reads text only"),
        ("/api/chat", {"model": "tiny-geex", "messages": [{"role": "user", "content": "x"}],
                       "tools": [{"type": "function"}]}, 400, "tools: tool calling"),
        ("/api/chat", {"model": "tiny-geex", "messages": [{"role": "user", "content": "\udc00"}]},
         400, "messages.0.content: the text is not valid Unicode"),
    ],
)  # fmt: skip
def test_errors_are_ollamas_shape(server, path, body, status, message):
    got, raw, _ = call(server, path, body)
    assert got == status
    assert message in json.loads(raw)["error"]


def test_a_suffix_needs_a_model_with_fim(state):
    with BackgroundServer(create_app(without_fim(state))) as plain:
        body = {"model": "tiny-geex", "prompt": "a", "suffix": "b", "stream": False}
        status, raw, _ = call(plain, "/api/generate", body)
        assert status == 400
        assert "no fill-in-the-middle tokens" in json.loads(raw)["error"]
        assert "geex serve --fim-style prefix-only" in json.loads(raw)["error"]
        _, raw, _ = call(plain, "/api/show", {"model": "tiny-geex"})
        assert json.loads(raw)["capabilities"] == ["completion"]


def test_a_chat_over_the_prompt_limit_and_one_the_template_refuses_are_400s(state):
    """A chat is not cut: over --max-prompt-tokens it is refused, on /api/chat and on
    /api/generate through the chat template, as OpenAI's chat route refuses it."""
    ask = "Reverse a list in Python and then print every element of it twice."
    chat = {"model": "tiny-geex", "messages": [{"role": "user", "content": ask}], "stream": False}
    generate = {"model": "tiny-geex", "prompt": ask, "stream": False}
    templated = dataclasses.replace(state.model, chat_template=CHATML)
    tight = ServerState(templated, state.engine, ServeLimits(max_prompt_tokens=8))
    with BackgroundServer(create_app(tight)) as running:
        for path, body in (("/api/chat", chat), ("/api/generate", generate)):
            status, raw, _ = call(running, path, body)
            assert status == 400, raw
            assert "this server's limit is 8 prompt tokens" in json.loads(raw)["error"]
    no_system = "{% if messages[0].role == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}{{ messages[-1].content }}"  # fmt: skip
    refusing = ServerState(dataclasses.replace(state.model, chat_template=no_system), state.engine)
    with BackgroundServer(create_app(refusing)) as running:
        status, raw, _ = call(running, "/api/generate", {**generate, "system": "You write Python."})
        assert status == 400, raw
        assert "System role not supported" in json.loads(raw)["error"]


def test_a_client_that_leaves_a_stream_cancels_its_generation(server, state, monkeypatch):
    handles = []
    submit = state.engine.submit

    def recording_submit(*args, **kwargs):
        handles.extend(submit(*args, **kwargs))
        return handles[-1:]

    monkeypatch.setattr(state.engine, "submit", recording_submit)
    body = {
        "model": "tiny-geex",
        "prompt": "x = ",
        "options": {"temperature": 0, "num_predict": 10_000},
    }
    request = urllib.request.Request(server.url + "/api/generate", data=json.dumps(body).encode())
    with urllib.request.urlopen(request, timeout=60) as response:
        assert json.loads(response.readline())["done"] is False
    [handle] = handles
    # The whole context would take the tiny model many steps; leaving ends it early.
    assert handle.wait(timeout=120).finish_reason == "cancelled"


def test_a_failure_mid_stream_is_the_last_line(server, state, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("device lost")

    monkeypatch.setattr(state.model.runner, "decode", broken)
    body = {"model": "tiny-geex", "prompt": "x = ", "options": GREEDY}
    status, raw, _ = call(server, "/api/generate", body)
    assert status == 200  # sent before the failure
    assert lines(raw)[-1] == {"error": "device lost"}
