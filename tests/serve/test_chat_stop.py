"""Every protocol's chat (OpenAI's, Ollama's, and the tasks asked of a chat model) ends its answer
at the model's chat stop text (`ServedModel.chat_stop`: a base model's next "User:" turn).
`pytest tests/serve/test_chat_stop.py`."""

from __future__ import annotations

import dataclasses
import json

import pytest

from tests.conftest import required_module

required_module("fastapi")
required_module("uvicorn")

from geex.serve.models import ServedModel  # noqa: E402
from geex.serve.server import BackgroundServer, create_app  # noqa: E402
from geex.serve.state import ServerState  # noqa: E402
from geex.serve.tasks import ExplainTask  # noqa: E402
from tests.serve.editor_server import expected_text, post, save_tiny_model, serving_state  # noqa: E402

MESSAGES = [{"role": "user", "content": "Write add in Python."}]
PLAIN_TEMPLATE = "{% for m in messages %}{{ m['content'] }}\n{% endfor %}"
CODE = "def add(a, b):\n    return a + b\n"


@dataclasses.dataclass
class StopsAt(ServedModel):
    """The served model with a chat stop text of the test's choosing: one its answer holds."""

    stop_text: str = ""

    @property
    def chat_stop(self) -> tuple[str, ...]:
        return (self.stop_text,)


@pytest.fixture(scope="module")
def state(tmp_path_factory):
    served = serving_state(save_tiny_model(tmp_path_factory.mktemp("chatstop") / "tiny-geex"))
    yield served
    served.engine.close()


def stop_inside(text: str) -> tuple[str, str]:
    """A stop text that first occurs a few characters into ``text``, and the text before it."""
    for start in range(2, len(text) - 2):
        piece = text[start : start + 2]
        if piece.strip() and text.find(piece) == start:
            return piece, text[:start]
    raise AssertionError(f"the tiny model's answer {text!r} has no stop text to cut at")


def stopping_state(state: ServerState, stop: str, chat_template: str | None) -> ServerState:
    fields = {f.name: getattr(state.model, f.name) for f in dataclasses.fields(state.model)}
    model = StopsAt(**{**fields, "chat_template": chat_template}, stop_text=stop)
    return ServerState(model, state.engine, state.limits)


def test_openai_and_ollama_chats_on_a_base_model_end_at_the_chat_stop(state):
    assert state.model.chat_template is None  # a base model: its chat is a plain transcript
    whole = expected_text(state, state.model.chat_prompt_ids(MESSAGES), max_tokens=24)
    stop, before = stop_inside(whole)
    with BackgroundServer(create_app(stopping_state(state, stop, None))) as server:
        body = {"model": "tiny-geex", "messages": MESSAGES, "stream": False,
                "options": {"temperature": 0, "num_predict": 24}}  # fmt: skip
        status, raw, _ = post(server.url + "/api/chat", body)
        assert status == 200 and json.loads(raw)["message"]["content"] == before
        body = {"messages": MESSAGES, "temperature": 0, "max_tokens": 24}
        status, raw, _ = post(server.url + "/v1/chat/completions", body)
        assert status == 200 and json.loads(raw)["choices"][0]["message"]["content"] == before


def test_a_task_asked_as_a_chat_ends_at_the_chat_stop(state):
    model = dataclasses.replace(state.model, chat_template=PLAIN_TEMPLATE)
    prompt = ExplainTask(code=CODE, language="python").prompt(chat=True)
    ids = model.chat_prompt_ids([dict(m) for m in prompt.messages])
    whole = expected_text(state, ids, max_tokens=24)
    stop, before = stop_inside(whole)
    with BackgroundServer(create_app(stopping_state(state, stop, PLAIN_TEMPLATE))) as server:
        body = {"code": CODE, "language": "python", "max_tokens": 24}
        status, raw, _ = post(server.url + "/v1/tasks/explain", body)
    assert status == 200 and json.loads(raw)["text"] == before


def test_the_servers_own_chat_stop_leaves_the_client_all_sixteen(tmp_path):
    """A base model's transcript stop is the server's, not one of the client's 16."""
    from geex.errors import GeexError
    from geex.serve.engine import MAX_STOP_SEQUENCES, GenerationParams

    client = tuple(f"#{i}" for i in range(MAX_STOP_SEQUENCES))
    params = GenerationParams(stop=client, server_stop=("\nUser:",))
    assert params.stop_sequences()[: MAX_STOP_SEQUENCES + 1] == [*client, "\nUser:"]
    with pytest.raises(GeexError, match="stop: at most 16"):
        GenerationParams(stop=(*client, "#16"))


def test_a_base_model_chat_takes_sixteen_stop_sequences_over_http(state):
    """OpenAI's and Ollama's chats on a base model: the transcript's stop is not counted."""
    stops = [f"#{i}#" for i in range(16)]
    with BackgroundServer(create_app(state)) as server:
        body = {"messages": MESSAGES, "temperature": 0, "max_tokens": 4, "stop": stops}
        status, raw, _ = post(server.url + "/v1/chat/completions", body)
        assert status == 200, raw
        body = {"model": "tiny-geex", "messages": MESSAGES, "stream": False,
                "options": {"temperature": 0, "num_predict": 4, "stop": stops}}  # fmt: skip
        status, raw, _ = post(server.url + "/api/chat", body)
        assert status == 200, raw
