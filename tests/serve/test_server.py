"""`geex serve` over real HTTP: completions equal complete(), FIM, chat, streaming, n, stop, OpenAI-style errors. `pytest tests/serve/test_server.py`."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.conftest import required_module

required_module("fastapi")
required_module("uvicorn")

from geex.model.loader import load_for_inference  # noqa: E402
from geex.model.sampling import SamplingConfig  # noqa: E402
from geex.serve.completion import complete  # noqa: E402
from tests.serve.tiny_server import call, save_tiny_checkpoint, serving  # noqa: E402

PROMPTS = ["def add(a, b):\n", "int main() {\n    int x = "]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return save_tiny_checkpoint(tmp_path_factory.mktemp("serve") / "tiny-geex")


@pytest.fixture(scope="module")
def reference(checkpoint):
    """The same checkpoint loaded for ``complete()``, the text the server must match."""
    return load_for_inference(checkpoint, device="cpu")


@pytest.fixture(scope="module")
def served(checkpoint):
    with serving(checkpoint) as running:
        yield running


@pytest.fixture(scope="module")
def server(served):
    return served[0]


@pytest.fixture(scope="module")
def state(served):
    return served[1]


def post(server, body, path="/v1/completions"):
    """(status, parsed JSON) of a POST; ``body`` may be raw bytes."""
    return call(server, path, body)[:2]


def get(server, path):
    return call(server, path)[1]


def stream(server, body, path="/v1/completions"):
    """The ``data:`` payloads of a streamed completion, ``[DONE]`` included, in order."""
    request = urllib.request.Request(
        server.url + path, data=json.dumps({**body, "stream": True}).encode()
    )
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=60) as response:
        assert response.headers["Content-Type"].startswith("text/event-stream")
        raw = response.read().decode()
    events = raw.split("\n\n")
    assert events[-1] == "" and all(e.startswith("data: ") for e in events[:-1]), raw[:300]
    return [e.removeprefix("data: ") for e in events[:-1]]


def expected(reference, prompts, **kwargs):
    sampling = SamplingConfig(**{"max_new_tokens": 24, **kwargs.pop("sampling", {})})
    out = complete(reference.model, reference.tokenizer, prompts, sampling=sampling, **kwargs)
    return [c for samples in out for c in samples]


def test_health_index_and_models(server):
    health = get(server, "/health")
    assert health["status"] == "ok" and health["model"] == "tiny-geex"
    assert {"running", "queued", "slots", "streams"} <= set(health["engine"])
    index = get(server, "/")
    assert {"POST /v1/completions", "POST /v1/chat/completions", "GET /v1/models"} <= set(
        index["endpoints"]
    )
    models = get(server, "/v1/models")
    assert models["object"] == "list" and [m["id"] for m in models["data"]] == ["tiny-geex"]


def test_greedy_completions_equal_complete(server, reference):
    status, body = post(server, {"model": "tiny-geex", "prompt": PROMPTS, "max_tokens": 24,
                                 "temperature": 0})  # fmt: skip
    assert status == 200, body
    want = expected(reference, PROMPTS, add_tag=False)
    assert body["object"] == "text_completion" and body["id"].startswith("cmpl-")
    assert [c["index"] for c in body["choices"]] == [0, 1]
    assert [c["text"] for c in body["choices"]] == [c.text for c in want]
    assert all(c.text for c in want)  # the comparison is not between empty strings
    reasons = {"stop": "stop", "eos": "stop", "length": "length"}
    assert [c["finish_reason"] for c in body["choices"]] == [reasons[c.finish_reason] for c in want]
    prompt_tokens = sum(len(reference.tokenizer.encode(p)) for p in PROMPTS)
    completion_tokens = sum(c.num_tokens for c in want)
    assert body["usage"] == {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                             "total_tokens": prompt_tokens + completion_tokens}  # fmt: skip


def test_language_field_adds_the_tag_and_stop_rules_and_echo_repeats_the_prompt(server, reference):
    body = {"prompt": PROMPTS[1], "max_tokens": 24, "temperature": 0, "language": "cpp"}
    status, answer = post(server, {**body, "echo": True})
    assert status == 200, answer
    (want,) = expected(reference, PROMPTS[1], language="cpp")
    assert answer["choices"][0]["text"] == PROMPTS[1] + want.text
    tagged = "// language: C++\n" + PROMPTS[1]
    assert answer["usage"]["prompt_tokens"] == len(reference.tokenizer.encode(tagged))


def test_suffix_fills_in_the_middle_with_the_fim_prompt(server, state, reference):
    prefix, suffix = "def add(a, b):\n    c = ", "\n    return c\n"
    status, answer = post(server, {"prompt": prefix, "suffix": suffix, "max_tokens": 16,
                                   "temperature": 0})  # fmt: skip
    assert status == 200, answer
    tok, fim = reference.tokenizer, state.model.fim_ids  # Geex's style: prefix-suffix-middle
    ids = [fim.prefix, *tok.encode(prefix), fim.suffix, *tok.encode(suffix), fim.middle]
    assert answer["usage"]["prompt_tokens"] == len(ids)
    [want] = state.engine.generate(ids, _greedy(16, state))
    assert answer["choices"][0]["text"] == want.text
    # Without the suffix the same prefix is a plain continuation: a different prompt.
    plain = post(server, {"prompt": prefix, "max_tokens": 16, "temperature": 0})[1]
    assert plain["usage"]["prompt_tokens"] == len(tok.encode(prefix))


def test_a_long_fim_prompt_is_cut_to_leave_max_tokens_not_refused(server, state):
    prefix, suffix = "x = 1\n" * 400, "y = 2\n" * 400
    status, answer = post(server, {"prompt": prefix, "suffix": suffix, "max_tokens": 4,
                                   "temperature": 0})  # fmt: skip
    assert status == 200, answer
    assert answer["usage"]["prompt_tokens"] == state.model.context_length - 4


def _greedy(max_tokens, state):
    from geex.serve.engine import GenerationParams

    return GenerationParams(max_tokens=max_tokens, temperature=0,
                            stop_token_ids=state.model.stop_token_ids)  # fmt: skip


def test_chat_answers_with_an_assistant_message_from_the_chat_prompt(server, state):
    messages = [{"role": "system", "content": "You write Python."},
                {"role": "user", "content": [{"type": "text", "text": "Add two numbers."}]}]  # fmt: skip
    status, answer = post(server, {"messages": messages, "max_tokens": 12, "temperature": 0,
                                   "tools": [], "tool_choice": "auto", "user": "me",
                                   "response_format": {"type": "text"}, "logprobs": False},
                          "/v1/chat/completions")  # fmt: skip
    assert status == 200, answer
    assert answer["object"] == "chat.completion" and answer["id"].startswith("chatcmpl-")
    plain = [{"role": "system", "content": "You write Python."},
             {"role": "user", "content": "Add two numbers."}]  # fmt: skip
    ids = state.model.chat_prompt_ids(plain)
    params = dataclasses.replace(_greedy(12, state), stop=state.model.chat_stop)
    [want] = state.engine.generate(ids, params)
    (choice,) = answer["choices"]
    assert choice["message"] == {"role": "assistant", "content": want.text}
    assert answer["usage"]["prompt_tokens"] == len(ids)
    events = [json.loads(e) for e in stream(server, {"messages": messages, "max_tokens": 12,
              "temperature": 0}, "/v1/chat/completions")[:-1]]  # fmt: skip
    assert events[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert all(e["object"] == "chat.completion.chunk" for e in events)
    text = "".join(e["choices"][0]["delta"].get("content", "") for e in events)
    assert text == want.text and events[-1]["choices"][0]["finish_reason"] == "length"


def test_streamed_chunks_concatenate_to_the_unstreamed_text(server):
    body = {"prompt": PROMPTS, "max_tokens": 24, "temperature": 0.9, "n": 2, "seed": 11,
            "stream_options": {"include_usage": True}}  # fmt: skip
    status, whole = post(server, body)
    assert status == 200, whole
    events = stream(server, body)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    texts, finished = [""] * 4, [None] * 4
    for chunk in chunks[:-1]:
        (choice,) = chunk["choices"]
        texts[choice["index"]] += choice["text"]
        if choice["finish_reason"]:
            assert finished[choice["index"]] is None and choice["text"] == ""
            finished[choice["index"]] = choice["finish_reason"]
    assert texts == [c["text"] for c in whole["choices"]]
    assert finished == [c["finish_reason"] for c in whole["choices"]]
    assert len(chunks) > 8  # text came in pieces, not in one chunk at the end
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] == whole["usage"]
    assert all(chunk["usage"] is None for chunk in chunks[:-1])  # as OpenAI's chunks carry it


NULLS = {"temperature": None, "top_p": None, "n": None, "max_tokens": None, "stream": None,
         "echo": None, "seed": None, "stop": None, "stream_options": None}  # fmt: skip


def test_null_fields_take_their_defaults(server):
    status, answer = post(server, {"prompt": "def f():\n", **NULLS})
    assert status == 200, answer
    assert len(answer["choices"]) == 1 and answer["usage"]["completion_tokens"] <= 16
    messages = [{"role": "user", "content": "hi"}]
    nulls = {k: v for k, v in NULLS.items() if k != "echo"}
    body = {"messages": messages, **nulls, "max_completion_tokens": None}
    status, answer = post(server, body, "/v1/chat/completions")
    assert status == 200, answer
    status, answer = post(server, {"prompt": None})
    assert status == 400  # a required field stays required


def test_a_developer_message_is_a_system_message(server):
    def prompt_tokens(role: str) -> int:
        messages = [{"role": role, "content": "Answer in Python."},
                    {"role": "user", "content": "hi"}]  # fmt: skip
        body = {"messages": messages, "max_tokens": 1}
        status, answer = post(server, body, "/v1/chat/completions")
        assert status == 200, answer
        return answer["usage"]["prompt_tokens"]

    assert prompt_tokens("developer") == prompt_tokens("system")


def test_n_samples_are_seeded_per_sample_and_ordered_prompt_major(server):
    body = {"prompt": PROMPTS, "max_tokens": 12, "temperature": 1.0, "n": 3, "seed": 5}
    status, first = post(server, body)
    assert status == 200, first
    assert [c["index"] for c in first["choices"]] == list(range(6))
    texts = [c["text"] for c in first["choices"]]
    assert len(set(texts)) > 1
    assert texts == [c["text"] for c in post(server, body)[1]["choices"]]
    # Sample i of a seeded request draws from seed + i, whatever else is asked with it.
    for i, prompt in enumerate(PROMPTS):
        for sample in range(3):
            alone = {**body, "prompt": prompt, "n": 1, "seed": 5 + sample}
            assert post(server, alone)[1]["choices"][0]["text"] == texts[3 * i + sample]


def test_stop_sequences_cut_the_completion(server):
    body = {"prompt": PROMPTS[0], "max_tokens": 24, "temperature": 0}
    full = post(server, body)[1]["choices"][0]["text"]
    stop = full[len(full) // 2 : len(full) // 2 + 2]
    status, answer = post(server, {**body, "stop": ["never-there", stop]})
    assert status == 200, answer
    (choice,) = answer["choices"]
    assert choice["text"] == full[: full.index(stop)] and choice["finish_reason"] == "stop"
    assert post(server, {**body, "stop": stop})[1]["choices"][0]["text"] == choice["text"]


def test_top_k_1_samples_the_greedy_text(server):
    body = {"prompt": PROMPTS[0], "max_tokens": 16}
    greedy = post(server, {**body, "temperature": 0})[1]["choices"][0]["text"]
    status, answer = post(server, {**body, "temperature": 1.0, "top_k": 1, "seed": 3})
    assert status == 200 and answer["choices"][0]["text"] == greedy


def test_concurrent_requests_each_get_their_own_answer(server):
    bodies = [{"prompt": p, "max_tokens": 16, "temperature": 0} for p in [*PROMPTS, *PROMPTS]]
    alone = [post(server, b)[1]["choices"][0]["text"] for b in bodies]
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(lambda b: post(server, b)[1]["choices"][0]["text"], bodies))
    assert together == alone


@pytest.mark.parametrize(
    ("body", "status", "param", "says"),
    [
        ({"prompt": "x", "temperature": -1}, 400, "temperature", "temperature must be from 0"),
        ({"prompt": "x", "n": 2, "temperature": 0}, 400, "n", "set temperature > 0"),
        ({"prompt": "x", "top_p": 0}, 400, "top_p", "top_p must be in (0, 1]"),
        ({"prompt": "x", "top_k": -1}, 400, "top_k", "top_k must be >= 0"),
        ({"prompt": "x", "max_tokens": 0}, 400, "max_tokens", "max_tokens must be >= 1"),
        ({"prompt": 5}, 400, "prompt", "prompt:"),
        ({"max_tokens": 3}, 400, "prompt", "prompt: Field required"),
        ({"prompt": ""}, 400, "prompt", "prompt is empty"),
        ({"prompt": "x", "language": "klingon"}, 400, "language", "klingon"),
        ({"prompt": "x", "stop": ["a"] * 17}, 400, "stop", "at most 16 stop sequences"),
        ({"prompt": "x", "stop": "a" * 257}, 400, "stop", "at most 256 characters"),
        ({"prompt": "x", "logprobs": 3}, 400, "logprobs", "not supported"),
        ({"prompt": "x", "presence_penalty": 1}, 400, "presence_penalty", "not supported"),
        ({"prompt": "x", "n": 300, "temperature": 1}, 400, "n", "--max-n"),
        ({"prompt": "x", "max_tokens": 5000}, 400, "max_tokens", "--max-tokens"),
        ({"prompt": "x " * 400}, 400, "prompt", "context is 256 tokens"),
        ({"prompt": "x", "model": "gpt-4"}, 404, "model", "not served here"),
        ({"prompt": "x", "suffix": "y", "echo": True}, 400, "echo", "suffix"),
        (b"{not json", 400, None, "not valid JSON"),
        (b"", 400, None, "body is empty"),
    ],
)
def test_bad_completions_get_openai_style_errors(server, body, status, param, says):
    got, answer = post(server, body)
    assert got == status, answer
    error = answer["error"]
    assert says in error["message"] and error["param"] == param
    assert error["type"] == "invalid_request_error"


@pytest.mark.parametrize(
    ("body", "param", "says"),
    [
        ({"messages": []}, "messages", "empty"),
        ({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, "messages",
         "only text"),
        ({"messages": [{"role": "user", "content": "hi"}], "logprobs": True}, "logprobs",
         "not supported"),
        ({"messages": [{"role": "user", "content": "hi"}], "tool_choice": "required"},
         "tool_choice", "not supported"),
        ({"messages": [{"role": "user", "content": "hi"}],
          "response_format": {"type": "json_object"}}, "response_format", "not supported"),
        ({"messages": [{"role": "user", "content": "x " * 400}]}, "messages", "context"),
        ({"messages": [{"role": "user", "content": "hi"}], "max_completion_tokens": 0},
         "max_tokens", ">= 1"),
    ],
)  # fmt: skip
def test_bad_chats_get_openai_style_errors(server, body, param, says):
    got, answer = post(server, body, "/v1/chat/completions")
    assert got == 400, answer
    assert says in answer["error"]["message"] and answer["error"]["param"] == param


def test_unknown_route_is_a_json_404(server):
    status, answer = post(server, {}, path="/v1/chat/nope")
    assert status == 404 and answer["error"]["message"] == "Not Found"


def test_geex_serve_command_serves_the_checkpoint(checkpoint):
    command = [sys.executable, "-m", "geex", "serve", "--model", str(checkpoint), "--port", "0",
               "--device", "cpu", "--model-name", "tiny", "--log-level", "warning",
               "--fim-style", "none"]  # fmt: skip
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    try:
        line = process.stderr.readline()
        match = re.search(r"at (http://127\.0\.0\.1:\d+)/v1", line)
        assert match, line + process.stderr.read()
        assert "POST /v1/chat/completions" in process.stderr.readline()
        models = json.loads(
            urllib.request.urlopen(match.group(1) + "/v1/models", timeout=60).read()
        )
        assert [m["id"] for m in models["data"]] == ["tiny"]
        request = urllib.request.Request(
            match.group(1) + "/v1/completions", method="POST",
            data=json.dumps({"prompt": "x", "suffix": "y"}).encode(),
            headers={"Content-Type": "application/json"},
        )  # fmt: skip
        with pytest.raises(urllib.error.HTTPError) as refused:  # --fim-style none: no infill
            urllib.request.urlopen(request, timeout=60)
        assert refused.value.code == 400
    finally:
        process.terminate()
        process.wait(timeout=30)
        process.stderr.close()


@pytest.mark.parametrize(
    ("flags", "says"),
    [
        (["--host", "0.0.0.0"], "--insecure-no-key"),
        (["--api-key", " "], "--api-key"),
        (["--max-n", "0"], "max_n (--max-n) must be at least 1, got 0"),
        (["--max-body-mb", "0"], "max_body_bytes (--max-body-mb) must be at least 1"),
        (["--max-body-mb", "inf"], "argument --max-body-mb: wants a number of MB"),
        (["--max-streams", "many"], "max_streams"),
        (["--cors-origin", " "], "a CORS origin is empty"),
        (["--fim-style", "klingon"], "unknown FIM style"),
    ],
)
def test_geex_serve_refuses_unsafe_or_impossible_settings_in_one_line(checkpoint, flags, says):
    command = [sys.executable, "-m", "geex", "serve", "--model", str(checkpoint), "--port", "0",
               "--device", "cpu", *flags]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != "GEEX_API_KEY"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode != 0 and says in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_a_failure_inside_the_engine_is_a_json_500_and_the_server_goes_on(
    server, state, monkeypatch
):
    def broken(*args, **kwargs):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(state.engine.runner, "prefill", broken)
    status, answer = post(server, {"prompt": "x", "temperature": 0})
    assert status == 500 and answer["error"]["type"] == "server_error"
    assert "RuntimeError: out of memory" in answer["error"]["message"]
    events = stream(server, {"prompt": "x", "temperature": 0})
    assert json.loads(events[0])["error"]["type"] == "server_error" and events[-1] == "[DONE]"
    monkeypatch.undo()
    assert post(server, {"prompt": "x", "temperature": 0})[0] == 200


def test_every_protocol_is_mounted_and_tabby_bodies_share_v1_completions(server, state):
    endpoints = set(get(server, "/")["endpoints"])
    assert {"GET /v1/health", "POST /api/generate", "POST /infill", "POST /v1/tasks/{task}"} <= (
        endpoints
    )
    tabby = {"language": "python", "segments": {"prefix": "def add(a, b):\n    c = ",
                                                "suffix": "\n    return c\n"}}  # fmt: skip
    status, answer = post(server, tabby)
    assert status == 200, answer
    assert answer["id"] and "text" in answer["choices"][0] and "object" not in answer
    status, version = call(server, "/api/version")[:2]
    assert status == 200 and "version" in version


def test_a_model_without_fim_refuses_a_suffix_but_takes_an_empty_one(state, reference):
    from geex.serve.server import BackgroundServer, create_app
    from geex.serve.state import ServerState

    no_fim = dataclasses.replace(state.model, fim=None, fim_ids=None)
    with BackgroundServer(create_app(ServerState(no_fim, state.engine))) as plain_server:
        body = {"prompt": "def f():\n", "max_tokens": 4, "temperature": 0}
        status, answer = post(plain_server, {**body, "suffix": "\n    return 1\n"})
        assert status == 400 and answer["error"]["param"] == "suffix"
        assert "--fim-style" in answer["error"]["message"]
        status, answer = post(plain_server, {**body, "suffix": ""})
        assert status == 200, answer
        assert answer["usage"]["prompt_tokens"] == len(reference.tokenizer.encode("def f():\n"))


def test_a_busy_server_answers_as_the_tasks_do(server, state, monkeypatch):
    from geex.serve.engine import EngineBusy

    def busy(*args, **kwargs):
        raise EngineBusy("the server is busy", retry_after=2)

    monkeypatch.setattr(state.engine, "submit", busy)
    status, answer, headers = call(server, "/v1/completions", {"prompt": "x", "max_tokens": 2})
    assert status == 429 and headers["Retry-After"] == "2"
    assert answer["error"]["type"] == "rate_limit_error"
    assert answer["error"]["code"] == "rate_limit_exceeded"
