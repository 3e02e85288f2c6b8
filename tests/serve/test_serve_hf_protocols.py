"""`geex serve` (the command, in its own process) of a Hugging Face model folder answers the editor
protocols and the tasks in their shapes, with the text the model generates for each request's
prompt (the same greedy decode, run here in-process). `pytest tests/serve/test_serve_hf_protocols.py`."""

from __future__ import annotations

import json

import pytest

from tests.conftest import required_module

required_module("fastapi")
required_module("transformers")

from geex.languages import get_language  # noqa: E402
from geex.serve.engine import Engine, GenerationParams  # noqa: E402
from geex.serve.models import load_served_model  # noqa: E402
from geex.serve.tasks import AnswerCutter, ExplainTask  # noqa: E402
from tests.serve.editor_server import post  # noqa: E402
from tests.serve.hf_model_folder import STARCODER_FIM, save_tiny_hf_model  # noqa: E402
from tests.serve.serve_process import geex_serve  # noqa: E402

NAME = "tiny-hf"
PREFIX = "def add(a, b):\n    return "
SUFFIX = "\n\nprint(add(1, 2))\n"
CSS = "a { color: red; }\n"  # CSS comments are blocks: the explanation is the model's text


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return save_tiny_hf_model(tmp_path_factory.mktemp("hf") / NAME, special_tokens=STARCODER_FIM)


@pytest.fixture(scope="module")
def reference(folder):
    """What the model decodes, greedy, for prompt ids: ``(model, generate(ids, **params))``."""
    model = load_served_model(folder, device="cpu", max_slots=1)
    with Engine(model.runner, model.codec) as engine:

        def generate(ids: list[int], **params) -> str:
            params = {"temperature": 0.0, "stop_token_ids": model.stop_token_ids, **params}
            [completion] = engine.generate(ids, GenerationParams(**params))
            return completion.text

        yield model, generate


def answer_of(url: str, path: str, body: dict) -> dict:
    status, raw, headers = post(url + path, body)
    assert status == 200, raw[:500]
    assert headers["content-type"].startswith("application/json")
    return json.loads(raw)


def test_a_hugging_face_folder_answers_every_editor_protocol_and_the_tasks(folder, reference):
    model, generate = reference
    assert model.kind == "hf" and model.fim is not None  # StarCoder's FIM tokens, detected
    budget = model.context_length - 1
    infill_ids = model.fim_prompt_ids(PREFIX, SUFFIX, max_prompt_tokens=budget)
    infill = generate(infill_ids, max_tokens=8)
    assert infill, "the model infilled nothing: the test proves nothing"
    tabby = generate(infill_ids, max_tokens=64, language=get_language("python"))
    explain = ExplainTask(code=CSS, language="css").prompt(chat=False)
    generated = generate(model.codec.encode(explain.text), max_tokens=8, stop=explain.stop)
    cutter = AnswerCutter(explain.cut)
    explanation = explain.head + cutter.feed(generated) + cutter.finish()
    assert explanation, "the model explained nothing: the test proves nothing"

    with geex_serve(folder, "--model-name", NAME) as url:
        ollama = answer_of(url, "/api/generate", {
            "model": NAME, "prompt": PREFIX, "suffix": SUFFIX, "stream": False,
            "options": {"temperature": 0, "num_predict": 8},
        })  # fmt: skip
        llamacpp = answer_of(url, "/infill", {"input_prefix": PREFIX, "input_suffix": SUFFIX,
                                              "n_predict": 8, "temperature": 0})  # fmt: skip
        tabby_answer = answer_of(url, "/v1/completions", {
            "language": "python", "segments": {"prefix": PREFIX, "suffix": SUFFIX},
        })  # fmt: skip
        task = answer_of(url, "/v1/tasks/explain",
                         {"code": CSS, "language": "css", "max_tokens": 8})  # fmt: skip

    assert ollama["model"] == NAME and ollama["done"] is True
    assert ollama["response"] == infill and ollama["eval_count"] >= 1
    assert ollama["prompt_eval_count"] == len(infill_ids)

    assert llamacpp["stop"] is True and llamacpp["content"] == infill
    assert llamacpp["tokens_evaluated"] == len(infill_ids)

    assert set(tabby_answer) == {"id", "choices"}
    assert tabby_answer["choices"] == [{"index": 0, "text": tabby}]

    assert task["object"] == "task" and task["task"] == "explain" and task["model"] == NAME
    assert task["text"] == explanation and task["usage"]["completion_tokens"] >= 1
