"""`geex serve` over real HTTP: completions equal complete(), streaming, n, stop, OpenAI-style 400s. `pytest tests/serve/test_server.py`."""

from __future__ import annotations

import json
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

from geex.eval.problems import load_embedded  # noqa: E402
from geex.model import ModelConfig, build_model  # noqa: E402
from geex.model.checkpoint import save_checkpoint  # noqa: E402
from geex.model.sampling import SamplingConfig  # noqa: E402
from geex.serve.completion import complete  # noqa: E402
from geex.serve.server import BackgroundServer, ServedModel, create_app  # noqa: E402
from geex.tokenizer import train_tokenizer  # noqa: E402

PROMPTS = ["def add(a, b):\n", "int main() {\n    int x = "]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A tiny random Geex model and a tokenizer trained on a few programs, saved together."""
    texts = [p.prompt + p.canonical_solution for p in load_embedded(["python", "cpp"])]
    tokenizer = train_tokenizer(texts * 3, vocab_size=600, languages=["python", "cpp"])
    # init_std 0.1 rather than 0.02: varied greedy text, so that stop sequences have something
    # to cut.
    config = ModelConfig(n_layer=2, n_head=2, d_model=32, max_seq_len=256,
                         vocab_size=tokenizer.vocab_size, init_std=0.1)  # fmt: skip
    folder = tmp_path_factory.mktemp("serve") / "tiny-geex"
    save_checkpoint(build_model(config, seed=0).eval(), folder, tokenizer=tokenizer)
    return folder


@pytest.fixture(scope="module")
def served(checkpoint):
    return ServedModel.load(checkpoint, device="cpu")


@pytest.fixture(scope="module")
def server(served):
    with BackgroundServer(create_app(served)) as running:
        yield running


def post(server, body, path="/v1/completions"):
    """(status, parsed JSON) of a POST; ``body`` may be raw bytes."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(server.url + path, data=data, method="POST")
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def get(server, path):
    with urllib.request.urlopen(server.url + path, timeout=60) as response:
        return json.loads(response.read())


def stream(server, body):
    """The ``data:`` payloads of a streamed completion, ``[DONE]`` included, in order."""
    request = urllib.request.Request(
        server.url + "/v1/completions", data=json.dumps({**body, "stream": True}).encode()
    )
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=60) as response:
        assert response.headers["Content-Type"].startswith("text/event-stream")
        raw = response.read().decode()
    events = raw.split("\n\n")
    assert events[-1] == "" and all(e.startswith("data: ") for e in events[:-1]), raw[:300]
    return [e.removeprefix("data: ") for e in events[:-1]]


def expected(served, prompts, **kwargs):
    sampling = SamplingConfig(**{"max_new_tokens": 24, **kwargs.pop("sampling", {})})
    out = complete(served.model, served.tokenizer, prompts, sampling=sampling, **kwargs)
    return [c for samples in out for c in samples]


def test_health_and_models(server, served):
    assert get(server, "/health") == {"status": "ok", "model": "tiny-geex"}
    models = get(server, "/v1/models")
    assert models["object"] == "list" and [m["id"] for m in models["data"]] == ["tiny-geex"]


def test_greedy_completions_equal_complete(server, served):
    status, body = post(server, {"model": "tiny-geex", "prompt": PROMPTS, "max_tokens": 24,
                                 "temperature": 0})  # fmt: skip
    assert status == 200, body
    want = expected(served, PROMPTS, add_tag=False)
    assert body["object"] == "text_completion" and body["id"].startswith("cmpl-")
    assert [c["index"] for c in body["choices"]] == [0, 1]
    assert [c["text"] for c in body["choices"]] == [c.text for c in want]
    assert all(c.text for c in want)  # the comparison is not between empty strings
    reasons = {"stop": "stop", "eos": "stop", "length": "length"}
    assert [c["finish_reason"] for c in body["choices"]] == [reasons[c.finish_reason] for c in want]
    prompt_tokens = sum(len(served.tokenizer.encode(p)) for p in PROMPTS)
    completion_tokens = sum(c.num_tokens for c in want)
    assert body["usage"] == {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                             "total_tokens": prompt_tokens + completion_tokens}  # fmt: skip


def test_language_field_adds_the_tag_and_stop_rules_and_echo_repeats_the_prompt(server, served):
    body = {"prompt": PROMPTS[1], "max_tokens": 24, "temperature": 0, "language": "cpp"}
    status, answer = post(server, {**body, "echo": True})
    assert status == 200, answer
    (want,) = expected(served, PROMPTS[1], language="cpp")
    assert answer["choices"][0]["text"] == PROMPTS[1] + want.text
    tagged = "// language: C++\n" + PROMPTS[1]
    assert answer["usage"]["prompt_tokens"] == len(served.tokenizer.encode(tagged))


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


def test_n_samples_per_prompt_are_seeded_and_ordered_prompt_major(server, served):
    body = {"prompt": PROMPTS, "max_tokens": 12, "temperature": 1.0, "n": 3, "seed": 5}
    status, first = post(server, body)
    assert status == 200, first
    assert [c["index"] for c in first["choices"]] == list(range(6))
    texts = [c["text"] for c in first["choices"]]
    assert len(set(texts)) > 1
    assert texts == [c["text"] for c in post(server, body)[1]["choices"]]
    want = expected(served, PROMPTS, add_tag=False,
                    sampling={"max_new_tokens": 12, "temperature": 1.0, "num_samples": 3, "seed": 5})  # fmt: skip
    assert texts == [c.text for c in want]


def test_stop_sequences_cut_the_completion(server):
    body = {"prompt": PROMPTS[0], "max_tokens": 24, "temperature": 0}
    full = post(server, body)[1]["choices"][0]["text"]
    stop = full[len(full) // 2 : len(full) // 2 + 2]
    status, answer = post(server, {**body, "stop": ["never-there", stop]})
    assert status == 200, answer
    (choice,) = answer["choices"]
    assert choice["text"] == full[: full.index(stop)] and choice["finish_reason"] == "stop"
    assert post(server, {**body, "stop": stop})[1]["choices"][0]["text"] == choice["text"]


def test_concurrent_requests_take_turns_and_each_gets_its_own_answer(server):
    bodies = [{"prompt": p, "max_tokens": 16, "temperature": 0} for p in [*PROMPTS, *PROMPTS]]
    alone = [post(server, b)[1]["choices"][0]["text"] for b in bodies]
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(lambda b: post(server, b)[1]["choices"][0]["text"], bodies))
    assert together == alone


@pytest.mark.parametrize(
    ("body", "status", "param", "says"),
    [
        ({"prompt": "x", "temperature": -1}, 400, "temperature", "temperature must be >= 0"),
        ({"prompt": "x", "n": 2, "temperature": 0}, 400, "n", "set temperature > 0"),
        ({"prompt": "x", "top_p": 0}, 400, "top_p", "top_p must be in (0, 1]"),
        ({"prompt": "x", "max_tokens": 0}, 400, "max_tokens", "max_tokens must be >= 1"),
        ({"prompt": 5}, 400, "prompt", "prompt:"),
        ({"max_tokens": 3}, 400, "prompt", "prompt: Field required"),
        ({"prompt": ""}, 400, "prompt", "prompt is empty"),
        ({"prompt": "x", "language": "klingon"}, 400, "language", "klingon"),
        ({"prompt": "x", "logprobs": 3}, 400, "logprobs", "not supported"),
        ({"prompt": "x", "n": 300, "temperature": 1}, 400, "n", "at most 256"),
        ({"prompt": "x " * 400}, 400, "prompt", "context is 256 tokens"),
        ({"prompt": "x", "model": "gpt-4"}, 404, "model", "not served here"),
        (b"{not json", 400, None, "not valid JSON"),
    ],
)
def test_bad_requests_get_openai_style_errors(server, body, status, param, says):
    got, answer = post(server, body)
    assert got == status, answer
    error = answer["error"]
    assert says in error["message"] and error["param"] == param
    assert error["type"] == "invalid_request_error"


def test_unknown_route_is_a_json_404(server):
    status, answer = post(server, {}, path="/v1/chat/nope")
    assert status == 404 and answer["error"]["message"] == "Not Found"


def test_geex_serve_command_serves_the_checkpoint(checkpoint):
    command = [sys.executable, "-m", "geex", "serve", "--model", str(checkpoint), "--port", "0",
               "--device", "cpu", "--model-name", "tiny", "--log-level", "warning"]  # fmt: skip
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    try:
        line = process.stderr.readline()
        match = re.search(r"at (http://127\.0\.0\.1:\d+)/v1", line)
        assert match, line + process.stderr.read()
        # The socket listens from before the model loads: a request waits, it is not refused.
        models = json.loads(
            urllib.request.urlopen(match.group(1) + "/v1/models", timeout=60).read()
        )
        assert [m["id"] for m in models["data"]] == ["tiny"]
    finally:
        process.terminate()
        process.wait(timeout=30)
        process.stderr.close()


def test_a_failure_inside_the_server_is_a_json_500_and_the_server_goes_on(
    server, served, monkeypatch
):
    def broken(request, on_text=None):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(served, "complete", broken)
    status, answer = post(server, {"prompt": "x", "temperature": 0})
    assert status == 500 and answer["error"]["type"] == "server_error"
    assert "RuntimeError: out of memory" in answer["error"]["message"]
    events = stream(server, {"prompt": "x", "temperature": 0})
    assert json.loads(events[0])["error"]["type"] == "server_error" and events[-1] == "[DONE]"
    monkeypatch.undo()
    assert post(server, {"prompt": "x", "temperature": 0})[0] == 200
