"""Tabby's API over real HTTP with requests recorded from tabby-agent 1.5.0: health, settings,
events, FIM completions equal to the engine's greedy text, one-line mode, errors.
`pytest tests/serve/test_tabby_api.py`."""

from __future__ import annotations

import json

import pytest

from tests.conftest import required_module

required_module("fastapi")
required_module("uvicorn")

from geex.languages import get_language  # noqa: E402
from geex.serve.engine import EngineBusy  # noqa: E402
from geex.serve.infill import editor_language  # noqa: E402
from geex.serve.server import BackgroundServer, create_app  # noqa: E402
from geex.serve.tabby_api import (  # noqa: E402
    Segments,
    is_tabby_request,
    single_line,
    with_snippets,
)
from tests.serve.editor_server import (  # noqa: E402
    expected_text,
    get,
    post,
    without_fim,
)

# A body as tabby-agent 1.5.0 sent it (its debug log), paths made relative to the workspace.
AGENT_BODY = {
    "language": "python",
    "segments": {
        "prefix": "import os\n\n\ndef add(a, b):\n    ",
        "suffix": "\n\n\nprint(add(1, 2))\n",
        "filepath": "src/add.py",
        "git_url": "https://example.com/repo.git",
        "declarations": [{"filepath": "src/util.py", "body": "def twice(x):\n    return 2 * x"}],
        "relevant_snippets_from_changed_files": [],
    },
    "user": None,
}


def complete(server, body) -> tuple[int, dict]:
    status, raw, _ = post(server.url + "/v1/completions", body)
    return status, json.loads(raw)


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_health_has_what_tabby_agent_reads(server, method):
    if method == "GET":
        status, body = get(server.url + "/v1/health")
    else:
        status, raw, _ = post(server.url + "/v1/health", {})
        body = json.loads(raw)
    assert status == 200
    # The agent calls a server healthy only with both "model" and "device".
    assert body["model"] == "tiny-geex"
    assert body["device"] == "cpu"
    assert body["cpu_count"] >= 1 and isinstance(body["cuda_devices"], list)
    major, minor = (int(part) for part in body["version"]["git_describe"].split(".")[:2])
    assert (major, minor) >= (0, 9)  # the agent skips /v1beta/server_setting below 0.9.0


def test_server_setting_and_events(server):
    assert get(server.url + "/v1beta/server_setting") == (
        200,
        {"disable_client_side_telemetry": False},
    )
    event = {"type": "select", "completion_id": "cmpl-1", "choice_index": 0, "view_id": "v1",
             "elapsed": 120, "select_kind": "line"}  # fmt: skip
    status, raw, _ = post(server.url + "/v1/events?select_kind=line", event)
    assert (status, raw) == (200, b"")


def test_agent_body_is_answered_with_the_engines_fim_text(server, state):
    status, body = complete(server, AGENT_BODY)
    assert status == 200
    assert body["id"].startswith("cmpl-")
    [choice] = body["choices"]
    assert choice["index"] == 0
    assert choice["text"], "nothing generated: the comparison below would prove nothing"
    segments = AGENT_BODY["segments"]
    prefix = "# Path: src/util.py\n# def twice(x):\n#     return 2 * x\n" + segments["prefix"]
    ids = state.model.fim_prompt_ids(prefix, segments["suffix"], max_prompt_tokens=255)
    # The cursor's line is empty after it: a multi-line completion to Python's stop rules.
    assert choice["text"] == expected_text(
        state, ids, max_tokens=64, language=get_language("python")
    )


def test_a_line_with_text_after_the_cursor_is_completed_to_its_end(server, state):
    body = {"language": "python",
            "segments": {"prefix": "def add(a, b):\n    return ", "suffix": "  # sum\nx = 1\n"}}  # fmt: skip
    status, answer = complete(server, body)
    assert status == 200
    text = answer["choices"][0]["text"]
    assert text and "\n" not in text
    ids = state.model.fim_prompt_ids("def add(a, b):\n    return ", "  # sum\nx = 1\n",
                                     max_prompt_tokens=255)  # fmt: skip
    full = expected_text(state, ids, max_tokens=64, language=get_language("python"))
    assert full.startswith(text) and (text == full or full[len(text)] == "\n")


def test_no_suffix_completes_the_prefix_alone(server, state):
    body = {"language": "cpp", "segments": {"prefix": "int main() {\n    int x = "}}
    status, answer = complete(server, body)
    assert status == 200
    ids = state.model.codec.encode("int main() {\n    int x = ")
    expected = expected_text(state, ids, max_tokens=64, language=get_language("cpp"))
    assert answer["choices"][0]["text"] == expected


@pytest.mark.parametrize(
    ("suffix", "one_line"),
    [(None, False), ("", False), ("\nx", False), (")\n", False), ("]})\"  \n", False),
     ("/>\n", False), (" + 1\n", True), ("x", True), ("  # note", True)],
)  # fmt: skip
def test_single_line_as_tabby_agent_decides(suffix, one_line):
    assert single_line(suffix) is one_line


def test_snippets_go_before_the_prefix_as_comments():
    segments = Segments(
        prefix="x = ",
        declarations=[{"filepath": "a.py", "body": "A = 1\n\nB = 2"}],
        relevant_snippets_from_changed_files=[{"filepath": "b.py", "body": "C = 3", "score": 1}],
    )
    expected = "# Path: a.py\n# A = 1\n#\n# B = 2\n# Path: b.py\n# C = 3\nx = "
    assert with_snippets(segments, get_language("python")) == expected
    assert with_snippets(segments, None) == "x = "  # no comment syntax: left out


def test_editor_language_ids():
    assert editor_language("typescriptreact").key == "typescript"
    assert editor_language("shellscript").key == "shell"
    assert editor_language("Python").key == "python"
    assert editor_language("plaintext") is None and editor_language(None) is None


def test_tabby_and_openai_bodies_are_told_apart():
    assert is_tabby_request(AGENT_BODY)
    assert is_tabby_request({"segments": {"prefix": "x"}})
    assert not is_tabby_request({"prompt": "x", "max_tokens": 4})
    assert not is_tabby_request({"model": "m", "prompt": "x", "suffix": "y"})


def test_the_file_is_the_engines_document(server, state, monkeypatch):
    seen = []
    submit = state.engine.submit

    def recording_submit(ids, params, *, n=1, document=None):
        seen.append(document)
        return submit(ids, params, n=n, document=document)

    monkeypatch.setattr(state.engine, "submit", recording_submit)
    other_repo = {**AGENT_BODY["segments"], "git_url": "https://example.com/other.git"}
    no_file = {**AGENT_BODY["segments"], "filepath": None}
    for body in (AGENT_BODY, AGENT_BODY, {**AGENT_BODY, "segments": other_repo},
                 {**AGENT_BODY, "user": "someone-else"}, {**AGENT_BODY, "segments": no_file}):  # fmt: skip
        assert complete(server, body)[0] == 200
    same, again, repo, user, none = seen
    assert "src/add.py" in same and same == again  # a newer request for the file cancels this
    assert len({same, repo, user}) == 3  # another repository's or person's file is another
    assert none is None  # a repository alone is no document: its files would cancel each other


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"language": "python", "segments": "x"}, "segments: Input should be a valid dict"),
        ({"segments": {"suffix": "x"}}, "segments.prefix: Field required"),
        ({"segments": {"prefix": 3}}, "segments.prefix: Input should be a valid string"),
        ({"segments": {"prefix": "x"}, "temperature": -1}, "temperature must be from 0"),
        ({"segments": {"prefix": "x\ud800"}}, "segments.prefix: the text is not valid Unicode"),
    ],
)
def test_bad_bodies_are_400s_with_a_message(server, body, message):
    status, answer = complete(server, body)
    assert status == 400
    assert message in answer["error"]


def test_a_model_without_fim_refuses_a_suffix_and_completes_a_prefix(state):
    with BackgroundServer(create_app(without_fim(state))) as plain:
        status, answer = complete(plain, AGENT_BODY)
        assert status == 400
        assert "has no fill-in-the-middle tokens" in answer["error"]
        assert "geex serve --fim-style prefix-only" in answer["error"]  # what to do about it
        status, answer = complete(plain, {"segments": {"prefix": "def f():\n"}})
        assert status == 200


def test_a_full_queue_is_a_429_with_retry_after(server, state, monkeypatch):
    def busy(*args, **kwargs):
        raise EngineBusy("the server is busy: 8 requests are waiting already", retry_after=2)

    monkeypatch.setattr(state.engine, "submit", busy)
    status, raw, headers = post(server.url + "/v1/completions", AGENT_BODY)
    assert status == 429
    assert headers["retry-after"] == "2"
    assert "busy" in json.loads(raw)["error"]
