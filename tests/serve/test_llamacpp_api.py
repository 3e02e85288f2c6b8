"""llama.cpp's /infill and /completion over real HTTP with requests as llama.vim sends them:
FIM with extra context, SSE streaming, llama.cpp's error shape and its 501 for a model without
FIM. `pytest tests/serve/test_llamacpp_api.py`."""

from __future__ import annotations

import json

import pytest

from tests.conftest import required_module

required_module("fastapi")
required_module("uvicorn")

from geex.serve.engine import GenerationParams  # noqa: E402
from geex.serve.infill import WHOLE_CONTEXT  # noqa: E402
from geex.serve.llamacpp_api import ExtraContext, extra_context  # noqa: E402
from geex.serve.server import BackgroundServer, create_app  # noqa: E402
from tests.serve.editor_server import (  # noqa: E402
    expected_text,
    post,
    without_fim,
)

# llama.vim's request (its fields; its text shortened): the ring buffer of other chunks as
# input_extra, the cursor's line split into prompt (before the cursor) and the suffix.
LLAMA_VIM_BODY = {
    "input_prefix": "import os\n\n\ndef add(a, b):\n",
    "input_suffix": "\n\nprint(add(1, 2))\n",
    "input_extra": [{"filename": "util.py", "text": "def twice(x):\n    return 2 * x\n"}],
    "prompt": "    return ",
    "n_predict": 24,
    "top_k": 40,
    "top_p": 0.99,
    "stream": False,
    "samplers": ["top_k", "top_p", "infill"],
    "cache_prompt": True,
    "t_max_prompt_ms": 500,
    "t_max_predict_ms": 1000,
    "temperature": 0,
}


def infill_ids(state) -> list[int]:
    prefix = (
        "# util.py\ndef twice(x):\n    return 2 * x\nimport os\n\n\ndef add(a, b):\n    return "
    )
    return state.model.fim_prompt_ids(prefix, "\n\nprint(add(1, 2))\n", max_prompt_tokens=255)


def events(raw: bytes) -> list[dict]:
    chunks = [chunk for chunk in raw.decode().split("\n\n") if chunk]
    assert all(chunk.startswith("data: ") for chunk in chunks)
    return [json.loads(chunk[len("data: ") :]) for chunk in chunks]


def test_infill_answers_the_engines_fim_text(server, state):
    status, raw, _ = post(server.url + "/infill", LLAMA_VIM_BODY)
    assert status == 200
    answer = json.loads(raw)
    ids = infill_ids(state)
    assert answer["content"] == expected_text(state, ids, max_tokens=24)
    assert answer["stop"] is True and answer["model"] == "tiny-geex"
    assert answer["tokens_evaluated"] == len(ids)
    assert 1 <= answer["tokens_predicted"] <= 24
    assert answer["stop_type"] in ("eos", "limit", "word")
    assert answer["timings"]["predicted_n"] == answer["tokens_predicted"]


def test_infill_streams_server_sent_events(server, state):
    status, raw, headers = post(server.url + "/infill", {**LLAMA_VIM_BODY, "stream": True})
    assert status == 200
    assert headers["content-type"].startswith("text/event-stream")
    *parts, last = events(raw)
    assert parts and all(p["stop"] is False for p in parts)
    assert "".join(p["content"] for p in parts) == expected_text(
        state, infill_ids(state), max_tokens=24
    )
    assert last["stop"] is True and last["content"] == ""
    assert b"[DONE]" not in raw


def test_stop_words_end_the_text(server, state):
    full = expected_text(state, infill_ids(state), max_tokens=24)
    assert len(full) > 4
    stop = full[2:4]
    status, raw, _ = post(server.url + "/infill", {**LLAMA_VIM_BODY, "stop": [stop]})
    assert status == 200
    answer = json.loads(raw)
    assert answer["content"] == full[: full.index(stop)]
    assert answer["stop_type"] == "word"


def test_n_predict_zero_reads_the_prompt_and_generates_nothing(server, state, monkeypatch):
    """llama.vim's cache warm-up (n_predict 0, on its ring buffer's chunks) decodes nothing."""

    def no_generation(*args, **kwargs):
        raise AssertionError("n_predict 0 must not reach the engine")

    monkeypatch.setattr(state.engine, "submit", no_generation)
    for path, body in (
        ("/infill", LLAMA_VIM_BODY),
        ("/completion", {"prompt": "def add(a, b):\n"}),
    ):
        status, raw, _ = post(server.url + path, {**body, "n_predict": 0})
        assert status == 200, raw
        answer = json.loads(raw)
        assert answer["content"] == "" and answer["tokens_predicted"] == 0, answer
        assert answer["stop"] is True and answer["tokens_evaluated"] > 0
        status, raw, _ = post(server.url + path, {**body, "n_predict": 0, "stream": True})
        [last] = events(raw)
        assert status == 200 and last["stop"] is True and last["content"] == ""


def test_completion_continues_a_prompt(server, state):
    body = {"prompt": "int main() {\n", "n_predict": 16, "temperature": 0}
    status, raw, _ = post(server.url + "/completion", body)
    assert status == 200
    ids = state.model.codec.encode("int main() {\n")
    [done] = state.engine.generate(
        ids,
        GenerationParams(max_tokens=16, temperature=0, stop_token_ids=state.model.stop_token_ids),
    )
    answer = json.loads(raw)
    assert answer["content"] == done.text
    assert answer["tokens_predicted"] == done.num_tokens


def test_repeat_penalty_and_window_reach_the_engine(server, state):
    """llama.cpp's repeat_penalty over repeat_last_n tokens (-1: the whole context; 0: off)."""
    ids = state.model.codec.encode("int main() {\n")

    def answer(**fields):
        body = {"prompt": "int main() {\n", "n_predict": 16, "temperature": 0, **fields}
        status, raw, _ = post(server.url + "/completion", body)
        assert status == 200, raw
        return json.loads(raw)["content"]

    plain = expected_text(state, ids, max_tokens=16)
    penalized = expected_text(state, ids, max_tokens=16, repetition_penalty=3.0,
                              repetition_window=WHOLE_CONTEXT)  # fmt: skip
    assert penalized != plain
    assert answer(repeat_penalty=3.0, repeat_last_n=-1) == penalized
    assert answer(repeat_penalty=3.0, repeat_last_n=0) == plain
    assert answer() == plain  # llama.cpp's default: 1.0, off
    status, raw, _ = post(server.url + "/completion", {"prompt": "x", "repeat_last_n": -2})
    assert status == 400 and "repeat_last_n must be -1" in json.loads(raw)["error"]["message"]
    for penalty in (0, 1e-300):  # 1e-300: 0 as a float32, which the scores would be divided by
        status, raw, _ = post(
            server.url + "/completion", {"prompt": "x", "repeat_penalty": penalty}
        )
        message = json.loads(raw)["error"]["message"]
        assert status == 400 and "repetition_penalty must be from 0.01 to 100" in message


def test_a_prefix_longer_than_the_context_is_cut_not_refused(server):
    body = {**LLAMA_VIM_BODY, "input_prefix": "x = 1\n" * 2000, "n_predict": 4}
    status, raw, _ = post(server.url + "/infill", body)
    assert status == 200
    assert json.loads(raw)["tokens_evaluated"] <= 255


def test_extra_context_is_headed_by_its_file():
    chunks = [ExtraContext(filename="a.py", text="A = 1"),
              ExtraContext(filename="b.cpp", text="int b;\n"),
              ExtraContext(filename="notes", text="n"),
              ExtraContext(text="bare")]  # fmt: skip
    assert extra_context(chunks) == "# a.py\nA = 1\n// b.cpp\nint b;\nnotes\nn\nbare\n"


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [
        ("/infill", b"{not json", "not valid JSON"),
        ("/infill", {"input_prefix": 3}, "input_prefix: Input should be a valid string"),
        ("/infill", {"input_extra": [{"filename": []}]}, "input_extra.0.filename"),
        ("/infill", {"input_prefix": "x", "temperature": -2}, "temperature must be from 0"),
        ("/completion", {"prompt": ""}, "a non-empty prompt"),
        ("/infill", {"input_extra": [{"text": "a\ud800"}]}, "input_extra.0.text: the text is not"),
    ],
)
def test_errors_are_llamacpps_shape(server, path, body, message):
    status, raw, _ = post(server.url + path, body)
    assert status == 400
    error = json.loads(raw)["error"]
    assert error["code"] == 400 and error["type"] == "invalid_request_error"
    assert message in error["message"]


def test_infill_without_fim_is_not_supported(state):
    with BackgroundServer(create_app(without_fim(state))) as plain:
        status, raw, _ = post(plain.url + "/infill", LLAMA_VIM_BODY)
        assert status == 501
        error = json.loads(raw)["error"]
        assert error["type"] == "not_supported_error"
        assert "no fill-in-the-middle tokens" in error["message"]


def test_a_failure_mid_stream_is_an_error_event(server, state, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("device lost")

    monkeypatch.setattr(state.model.runner, "decode", broken)
    status, raw, _ = post(server.url + "/infill", {**LLAMA_VIM_BODY, "stream": True})
    assert status == 200
    last = raw.decode().strip().split("\n\n")[-1]
    assert last.startswith("error: ")
    assert json.loads(last[len("error: ") :])["error"]["message"] == "device lost"
