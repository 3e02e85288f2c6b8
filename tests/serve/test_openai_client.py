"""The real `openai` package against `geex serve`: completions (plain, suffix, streamed), chat, models, and its exception classes. `pytest tests/serve/test_openai_client.py`."""

from __future__ import annotations

import pytest

from tests.conftest import required_module

required_module("fastapi")
required_module("uvicorn")
openai = pytest.importorskip("openai")

from geex.serve.engine import EngineBusy, GenerationParams  # noqa: E402
from geex.serve.state import ServeLimits  # noqa: E402
from tests.serve.tiny_server import save_tiny_checkpoint, serving  # noqa: E402

KEY = "sk-geex-test"
PREFIX, SUFFIX = "def add(a, b):\n    c = ", "\n    return c\n"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    checkpoint = save_tiny_checkpoint(tmp_path_factory.mktemp("client") / "tiny-geex")
    with serving(checkpoint, ServeLimits(api_key=KEY, max_streams=1)) as running:
        yield running


@pytest.fixture(scope="module")
def client(served):
    return openai.OpenAI(base_url=served[0].url + "/v1", api_key=KEY, max_retries=0)


def test_models_lists_the_served_model(client):
    assert [m.id for m in client.models.list()] == ["tiny-geex"]
    assert client.models.retrieve("tiny-geex").id == "tiny-geex"
    with pytest.raises(openai.NotFoundError, match="not served here"):
        client.models.retrieve("gpt-4")


def test_completion_plain_and_with_suffix(client):
    plain = client.completions.create(model="tiny-geex", prompt=PREFIX, max_tokens=12,
                                      temperature=0)  # fmt: skip
    infill = client.completions.create(model="tiny-geex", prompt=PREFIX, suffix=SUFFIX,
                                       max_tokens=12, temperature=0)  # fmt: skip
    assert plain.choices[0].text and infill.choices[0].text
    assert infill.usage.prompt_tokens > plain.usage.prompt_tokens  # the suffix is in the prompt
    assert plain.choices[0].finish_reason in ("stop", "length")


def test_vllms_repetition_penalty_reaches_the_engine(client, served):
    _, state = served
    args = {"model": "tiny-geex", "prompt": PREFIX, "max_tokens": 16, "temperature": 0}
    plain = client.completions.create(**args).choices[0].text
    penalized = client.completions.create(**args, extra_body={"repetition_penalty": 1.5})
    params = GenerationParams(max_tokens=16, temperature=0, repetition_penalty=1.5,
                              stop_token_ids=state.model.stop_token_ids)  # fmt: skip
    [expected] = state.engine.generate(state.model.codec.encode(PREFIX), params)
    assert penalized.choices[0].text == expected.text != plain
    with pytest.raises(openai.BadRequestError, match="repetition_penalty must be from 0.01 to 100"):
        client.completions.create(**args, extra_body={"repetition_penalty": -1})


def test_streamed_completion_equals_the_unstreamed_one(client):
    args = {"model": "tiny-geex", "prompt": PREFIX, "suffix": SUFFIX, "max_tokens": 16,
            "temperature": 0}  # fmt: skip
    whole = client.completions.create(**args).choices[0].text
    chunks = list(client.completions.create(**args, stream=True))
    assert len(chunks) > 1
    assert "".join(c.choices[0].text for c in chunks) == whole
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")


def test_chat_streamed_and_not_with_usage(client):
    messages = [{"role": "user", "content": "Write add(a, b) in Python."}]
    args = {"model": "tiny-geex", "messages": messages, "max_tokens": 12, "temperature": 0,
            "user": "tester", "tools": [{"type": "function", "function": {"name": "f",
            "parameters": {"type": "object", "properties": {}}}}], "tool_choice": "auto",
            "parallel_tool_calls": False, "logprobs": False}  # fmt: skip
    answer = client.chat.completions.create(**args)
    assert answer.choices[0].message.role == "assistant"
    text = answer.choices[0].message.content
    assert text and answer.usage.completion_tokens == 12
    chunks = list(client.chat.completions.create(
        **args, stream=True, stream_options={"include_usage": True}))  # fmt: skip
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == text
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens == answer.usage.total_tokens
    newer = client.chat.completions.create(
        model="tiny-geex", messages=messages, max_completion_tokens=5, temperature=0
    )
    assert newer.usage.completion_tokens == 5


def test_bad_requests_raise_bad_request_error(client):
    with pytest.raises(openai.BadRequestError, match="temperature must be from 0"):
        client.completions.create(model="tiny-geex", prompt="x", temperature=-1)
    with pytest.raises(openai.BadRequestError, match="context"):
        client.completions.create(model="tiny-geex", prompt="x " * 400)
    with pytest.raises(openai.NotFoundError, match="not served here"):
        client.completions.create(model="gpt-4", prompt="x")


def test_a_wrong_or_missing_key_raises_authentication_error(served):
    url = served[0].url + "/v1"
    with pytest.raises(openai.AuthenticationError, match="not valid"):
        openai.OpenAI(base_url=url, api_key="wrong", max_retries=0).models.list()


def test_a_busy_server_raises_rate_limit_error(client, served, monkeypatch):
    args = {"model": "tiny-geex", "prompt": PREFIX, "max_tokens": 64, "temperature": 0}
    first = client.completions.create(**args, stream=True)  # holds the only stream
    try:
        with pytest.raises(openai.RateLimitError, match="--max-streams"):
            client.completions.create(**args, stream=True)
    finally:
        first.close()
    state = served[1]

    def busy(*args, **kwargs):
        raise EngineBusy("the server is busy: 64 requests are waiting already", retry_after=2)

    monkeypatch.setattr(state.engine, "submit", busy)
    with pytest.raises(openai.RateLimitError, match="busy") as caught:
        client.completions.create(**args)
    assert caught.value.response.headers["retry-after"] == "2"


def test_a_hugging_face_model_with_starcoder_fim_and_chatml_through_the_client(
    tmp_path_factory,
):
    from tests.serve.hf_model_folder import CHATML, STARCODER_FIM, save_tiny_hf_model

    folder = save_tiny_hf_model(tmp_path_factory.mktemp("hf") / "tiny-hf",
                                special_tokens=[*STARCODER_FIM, "<|im_start|>", "<|im_end|>"],
                                chat_template=CHATML)  # fmt: skip
    with serving(folder) as (server, state):
        assert state.model.kind == "hf" and state.model.fim.name == "starcoder"
        client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
        infill = client.completions.create(model="tiny-hf", prompt="def add(a, b):\n    ",
                                           suffix="\n    return c\n", max_tokens=8,
                                           temperature=0)  # fmt: skip
        ids = state.model.fim_prompt_ids("def add(a, b):\n    ", "\n    return c\n",
                                         max_prompt_tokens=state.prompt_budget())  # fmt: skip
        assert infill.usage.prompt_tokens == len(ids)
        chat = client.chat.completions.create(
            model="tiny-hf", messages=[{"role": "user", "content": "add"}], max_tokens=8,
            temperature=0,
        )  # fmt: skip
        prompt = state.model.chat_prompt_ids([{"role": "user", "content": "add"}])
        assert chat.usage.prompt_tokens == len(prompt)
        assert "<|im_end|>" not in chat.choices[0].message.content


def test_seeds_are_checked_as_every_protocol_checks_them(client):
    args = {"model": "tiny-geex", "prompt": PREFIX, "max_tokens": 4, "temperature": 1.0}
    assert client.completions.create(**args, seed=2**64 - 1, n=2).choices[1].text is not None
    with pytest.raises(openai.BadRequestError, match="seed must be an integer from 0 to"):
        client.completions.create(**args, seed=2**64)
    with pytest.raises(openai.BadRequestError, match="temperature must be from 0 .greedy. to 100"):
        client.completions.create(**{**args, "temperature": 3.5e38})
