"""POST /v1/tasks/{task} over HTTP with a tiny random Geex model: answers cut as the task says, streamed or whole, and OpenAI-shaped 4xx errors. `pytest tests/serve/test_tasks_api.py`."""

from __future__ import annotations

import dataclasses
import json
import urllib.error
import urllib.request

import pytest

from tests.conftest import required_module

required_module("fastapi")
required_module("uvicorn")

from fastapi import FastAPI  # noqa: E402
from fastapi.responses import JSONResponse  # noqa: E402

from geex.eval.problems import load_embedded  # noqa: E402
from geex.model import ModelConfig, build_model  # noqa: E402
from geex.model.checkpoint import save_checkpoint  # noqa: E402
from geex.serve.engine import EngineBusy, GenerationParams  # noqa: E402
from geex.serve.models import load_served_model  # noqa: E402
from geex.serve.openai_api import ApiError  # noqa: E402
from geex.serve.server import BackgroundServer  # noqa: E402
from geex.serve.state import ServeLimits, ServerState  # noqa: E402
from geex.serve.tasks import AnswerCutter, ExplainTask, TranslateTask  # noqa: E402
from geex.serve.tasks_api import router  # noqa: E402
from geex.tokenizer import train_tokenizer  # noqa: E402

ADD_PY = "def add(a, b):\n    return a + b\n"


def tasks_app(state) -> FastAPI:
    app = FastAPI()

    @app.exception_handler(ApiError)
    async def api_error(_request, err: ApiError) -> JSONResponse:
        return JSONResponse(err.body(), status_code=err.status, headers=err.headers)

    app.include_router(router(state))
    return app


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A tiny random Geex model whose tokenizer has FIM tokens, ready to serve."""
    texts = [p.prompt + p.canonical_solution for p in load_embedded(["python", "cpp"])]
    tokenizer = train_tokenizer(texts * 3, vocab_size=600, languages=["python", "cpp"])
    config = ModelConfig(n_layer=2, n_head=2, d_model=32, max_seq_len=256,
                         vocab_size=tokenizer.vocab_size, init_std=0.1)  # fmt: skip
    folder = tmp_path_factory.mktemp("tasks") / "tiny-geex"
    save_checkpoint(build_model(config, seed=0).eval(), folder, tokenizer=tokenizer)
    return load_served_model(folder, device="cpu", max_slots=2)


@pytest.fixture(scope="module")
def engine(served):
    from geex.serve.engine import Engine

    with Engine(served.runner, served.codec) as running:
        yield running


@pytest.fixture(scope="module")
def server(served, engine):
    state = ServerState(served, engine, ServeLimits(max_tokens=200))
    with BackgroundServer(tasks_app(state)) as running:
        yield running


def post(server, task, body, raw: bytes | None = None):
    """(status, parsed JSON, headers) of a task request."""
    data = raw if raw is not None else json.dumps(body).encode()
    request = urllib.request.Request(f"{server.url}/v1/tasks/{task}", data=data, method="POST")
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read()), response.headers
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read()), err.headers


def events(server, task, body):
    request = urllib.request.Request(
        f"{server.url}/v1/tasks/{task}", data=json.dumps({**body, "stream": True}).encode()
    )
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=60) as response:
        assert response.headers["Content-Type"].startswith("text/event-stream")
        raw = response.read().decode()
    chunks = raw.split("\n\n")
    assert chunks[-1] == "" and chunks[-2] == "data: [DONE]", raw[-200:]
    return [json.loads(c.removeprefix("data: ")) for c in chunks[:-2]]


def test_translate_answers_the_cut_generation_of_the_evaluation_prompt(server, served, engine):
    body = {"code": ADD_PY, "language": "python", "target": "cpp", "max_tokens": 40}
    status, answer, _ = post(server, "translate", body)
    assert status == 200, answer
    prompt = TranslateTask(ADD_PY, "python", "cpp").prompt(chat=False)
    ids = served.codec.encode(prompt.text)
    params = GenerationParams(max_tokens=40, temperature=0, stop=prompt.stop,
                              language=prompt.language)  # fmt: skip
    (generated,) = engine.generate(ids, params)
    cutter = AnswerCutter(prompt.cut)
    want = cutter.feed(generated.text) + cutter.finish()
    assert want  # the comparison is not between empty strings
    assert answer["text"] == want
    assert answer["object"] == "task" and answer["task"] == "translate"
    assert answer["model"] == "tiny-geex" and answer["id"].startswith("task-")
    assert answer["finish_reason"] in ("stop", "length")
    assert answer["usage"]["prompt_tokens"] == len(ids)
    assert answer["usage"]["completion_tokens"] == generated.num_tokens


def test_streamed_answer_is_the_whole_answer_in_pieces(server):
    body = {"code": ADD_PY, "language": "python", "target": "cpp", "max_tokens": 40}
    _, whole, _ = post(server, "translate", body)
    chunks = events(server, "translate", body)
    assert "".join(c["text"] for c in chunks[:-1]) == whole["text"]
    assert chunks[-1]["finish_reason"] == whole["finish_reason"]
    assert chunks[-1]["usage"] == whole["usage"]


def test_comment_answer_starts_with_the_code_first_line(server):
    status, answer, _ = post(server, "comment", {"code": ADD_PY, "language": "python",
                                                 "max_tokens": 16})  # fmt: skip
    assert status == 200, answer
    assert answer["text"].startswith("def add(a, b):\n")


def test_every_task_answers(server):
    bodies = {
        "complete": {"prefix": "def f(x):\n", "language": "python"},
        "infill": {"prefix": "def f(x):\n    return ", "suffix": "\n"},
        "comment-to-code": {"comment": "add two numbers", "language": "cpp"},
        "explain": {"code": ADD_PY, "language": "python", "natural_language": "zh"},
        "ask": {"question": "what does add return?", "context": ADD_PY, "language": "python"},
    }
    for task, body in bodies.items():
        status, answer, _ = post(server, task, {**body, "max_tokens": 8})
        assert status == 200, (task, answer)
        assert answer["task"] == task and answer["usage"]["completion_tokens"] <= 8


def test_a_chat_model_is_asked_through_its_chat_prompt(served, engine):
    chat = dataclasses.replace(served, chat_template="{{ messages }}")
    with BackgroundServer(tasks_app(ServerState(chat, engine))) as running:
        status, answer, _ = post(running, "explain", {"code": ADD_PY, "language": "python",
                                                      "max_tokens": 4})  # fmt: skip
    assert status == 200, answer
    messages = list(ExplainTask(ADD_PY, "python").prompt(chat=True).messages)
    assert answer["usage"]["prompt_tokens"] == len(chat.chat_prompt_ids(messages))


@pytest.mark.parametrize(
    ("task", "body", "status", "message"),
    [
        ("fix", {"code": "x"}, 404, "unknown task 'fix'; tasks: complete"),
        ("translate", {"code": ADD_PY, "language": "python"}, 400, "target: Field required"),
        ("translate", {"code": ADD_PY, "language": "python", "target": "klingon"}, 400,
         "target: unknown language 'klingon'"),
        ("explain", {"code": "", "language": "python"}, 400, "code is empty"),
        ("explain", {"code": ADD_PY, "language": "python", "natural_language": "fr"}, 400,
         "natural_language: Input should be 'en' or 'zh'"),
        ("explain", {"code": 3, "language": "python"}, 400, "code: Input should be a valid string"),
        ("explain", {"code": ADD_PY, "language": "python", "temperature": -1}, 400,
         "temperature must be from 0"),
        ("explain", {"code": ADD_PY, "language": "python", "max_tokens": 0}, 400,
         "max_tokens must be an integer >= 1"),
        ("explain", {"code": ADD_PY, "language": "python", "max_tokens": 500}, 400,
         "over this server's limit of 200 tokens per completion (geex serve --max-tokens)"),
        ("explain", {"code": ADD_PY, "language": "python", "model": "gpt-4"}, 404,
         "the model 'gpt-4' is not served here"),
        ("explain", {"code": ADD_PY * 200, "language": "python"}, 400, "send less code"),
        ("explain", [1, 2], 400, "must be a JSON object"),
        ("explain", {"code": "x = 1", "language": ""}, 400, "language is empty"),
        ("comment", {"code": "x = 1", "language": ""}, 400, "language is empty"),
        ("comment-to-code", {"comment": "add", "language": ""}, 400, "language is empty"),
        ("translate", {"code": ADD_PY, "language": "", "target": "go"}, 400,
         "language is empty"),
        ("translate", {"code": ADD_PY, "language": "python", "target": ""}, 400,
         "target is empty"),
    ],
)  # fmt: skip
def test_bad_requests_are_openai_errors(server, task, body, status, message):
    code, answer, _ = post(server, task, body)
    assert code == status, answer
    assert message in answer["error"]["message"]
    assert answer["error"]["type"] == "invalid_request_error"


def test_bad_json_is_a_400(server):
    code, answer, _ = post(server, "explain", None, raw=b"{not json")
    assert code == 400 and "not valid JSON" in answer["error"]["message"]


def test_infill_without_fim_tokens_is_a_400(served, engine):
    no_fim = dataclasses.replace(served, fim=None)
    with BackgroundServer(tasks_app(ServerState(no_fim, engine))) as running:
        code, answer, _ = post(running, "infill", {"prefix": "x = ", "suffix": "\n"})
    assert code == 400 and "no fill-in-the-middle tokens" in answer["error"]["message"]


def test_a_prompt_the_model_cannot_build_is_a_400(served, engine):
    tight = ServerState(served, engine, ServeLimits(max_prompt_tokens=2))
    with BackgroundServer(tasks_app(tight)) as running:
        code, answer, _ = post(running, "infill", {"prefix": "x = ", "suffix": "\n"})
    assert code == 400, answer
    assert answer["error"]["message"].startswith("cannot build the prompt: ")
    failing = "{{ raise_exception('this template takes no code blocks') }}"
    chat = dataclasses.replace(served, chat_template=failing)
    with BackgroundServer(tasks_app(ServerState(chat, engine))) as running:
        code, answer, _ = post(running, "explain", {"code": ADD_PY, "language": "python"})
    assert code == 400, answer
    assert "this template takes no code blocks" in answer["error"]["message"]


def test_a_full_queue_is_a_429_with_retry_after(served):
    class FullEngine:
        def submit(self, *args, **kwargs):
            raise EngineBusy("the server is busy: 64 requests are waiting already", retry_after=3)

    with BackgroundServer(tasks_app(ServerState(served, FullEngine()))) as running:
        code, answer, headers = post(running, "explain", {"code": ADD_PY, "language": "python"})
    assert code == 429 and headers["Retry-After"] == "3"
    assert answer["error"]["type"] == "rate_limit_error"
    assert answer["error"]["code"] == "rate_limit_exceeded"  # OpenAI's routes' code too


def test_a_failure_after_the_stream_began_is_an_error_event():
    import asyncio

    from geex.errors import GeexError
    from geex.serve.tasks_api import _Answer

    class FailingHandle:
        prompt_tokens = 3
        cancelled = False

        async def stream(self):
            yield "int x"
            raise GeexError("the engine has stopped")

        def cancel(self):
            self.cancelled = True

    handle = FailingHandle()
    prompt = ExplainTask("int x;", "cpp").prompt(chat=True)

    async def read():
        return [event async for event in _Answer("explain", "m", handle, prompt).events()]

    sent = asyncio.run(read())
    assert sent[0] == 'data: {"text": "int x"}\n\n'
    assert json.loads(sent[1].removeprefix("data: "))["error"]["message"] == (
        "the engine has stopped"
    )
    assert sent[2] == "data: [DONE]\n\n" and handle.cancelled


def test_the_document_reaches_the_engine_so_a_newer_request_cancels_the_older(served):
    seen = []

    class RecordingEngine:
        def submit(self, ids, params, *, n=1, document=None):
            seen.append(document)
            raise EngineBusy("the server is busy", retry_after=1)

    with BackgroundServer(tasks_app(ServerState(served, RecordingEngine()))) as running:
        post(running, "complete", {"prefix": "x = ", "document": "src/app.py"})
        post(running, "complete", {"prefix": "x = ", "document": "src/app.py", "user": "b"})
        post(running, "explain", {"code": "x = 1", "language": "python", "document": "src/app.py"})
        post(running, "complete", {"prefix": "x = "})
    first, other_user, explain, none = seen
    assert "src/app.py" in first and "complete" in first
    assert len({first, other_user, explain}) == 3  # a keystroke does not cancel an explain
    assert none is None


def test_a_tasks_own_length_stays_within_the_servers_cap(served, engine):
    state = ServerState(served, engine, ServeLimits(max_tokens=2))
    with BackgroundServer(tasks_app(state)) as capped:
        status, answer, _ = post(capped, "complete", {"prefix": "def f(x):\n"})
    assert status == 200, answer
    assert answer["usage"]["completion_tokens"] <= 2  # not the task's default of 64
