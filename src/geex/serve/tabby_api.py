"""Tabby's HTTP API, as ``tabby-agent`` (Tabby's editor agent, shared by its VS Code, JetBrains
and Vim plugins, and its language server) calls it::

    GET  /v1/health              what the agent shows and gates features on
    GET  /v1beta/server_setting  server-side settings the agent applies
    POST /v1/events              the agent's view/select/dismiss events: logged, answered 200
    POST /v1/completions         ``{"language", "segments": {"prefix", "suffix", ...}}``
                                 -> ``{"id", "choices": [{"index", "text"}]}``

``/v1/completions`` is also OpenAI's path: the OpenAI route serves both and hands a body that
:func:`is_tabby_request` recognises to :func:`tabby_completion`.

Tabby decides on the server how far a completion may run; Geex follows what tabby-agent then
keeps: when the cursor's line has text after it other than closing brackets (the agent's
"fill-in-line" mode), the agent drops any completion of more than one line, so the completion
stops at the end of the line; otherwise it runs over lines, to the language's stop rules.
Declarations and snippets from other files, which the agent sends to ground the completion,
go before the prefix as comments naming their file, as Tabby's server places them.
Tabby answers a bad request with a bare status; Geex adds ``{"error": message}`` for people.
"""

from __future__ import annotations

import logging
import os
import platform
import re
import uuid

import torch
from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from geex import __version__
from geex.languages import Language
from geex.serve.infill import (
    RequestError,
    document_key,
    editor_language,
    generation_params,
    infill_prompt_ids,
    parse_request,
    plain_prompt_ids,
    submit,
)
from geex.serve.infill import (
    plain_error_response as error_response,
)
from geex.serve.state import ServerState
from geex.serve.waiting import unless_disconnected

log = logging.getLogger("geex.serve.tabby")

# tabby-agent reads the server's version from /v1/health and skips features of servers older
# than it needs (server settings: 0.9.0). This is the Tabby API level served here.
TABBY_API_VERSION = "0.11.0"
DEFAULT_MAX_TOKENS = 64  # Tabby's max_decoding_tokens: an editor completion is short
# tabby-agent's test for a line whose rest the completion may run over: closing brackets only.
_CLOSING_ONLY = re.compile(r"(?:[)\]}>\"'`]|/>)*")


class Snippet(BaseModel):
    model_config = ConfigDict(extra="ignore")

    filepath: str
    body: str


class Segments(BaseModel):
    model_config = ConfigDict(extra="ignore")

    prefix: str
    suffix: str | None = None
    filepath: str | None = None
    git_url: str | None = None
    declarations: list[Snippet] | None = None
    relevant_snippets_from_changed_files: list[Snippet] | None = None
    clipboard: str | None = None


class TabbyCompletionRequest(BaseModel):
    """``POST /v1/completions`` as Tabby defines it; unknown fields are ignored."""

    model_config = ConfigDict(extra="ignore")

    language: str | None = None
    segments: Segments
    user: str | None = None
    temperature: float | None = None  # Tabby's debug option; none: greedy
    seed: int | None = None


def is_tabby_request(body: dict) -> bool:
    """A completions body in Tabby's shape (``segments``) rather than OpenAI's (``prompt``)."""
    return isinstance(body, dict) and "segments" in body and "prompt" not in body


def single_line(suffix: str | None) -> bool:
    """True when the cursor's line goes on after it with more than closing brackets."""
    rest_of_line = (suffix or "").split("\n", 1)[0].rstrip()
    return _CLOSING_ONLY.fullmatch(rest_of_line) is None


def with_snippets(segments: Segments, language: Language | None) -> str:
    """The prefix, after the snippets the agent sent as comments (for a language with line
    comments; without one they are left out rather than put in the code uncommented)."""
    comment = language.line_comment if language else None
    snippets = [
        *(segments.declarations or []),
        *(segments.relevant_snippets_from_changed_files or []),
    ]
    if not comment or not snippets:
        return segments.prefix
    lines = []
    for snippet in snippets:
        lines.append(f"{comment} Path: {snippet.filepath}")
        lines.extend(f"{comment} {line}".rstrip() for line in snippet.body.splitlines())
    return "\n".join(lines) + "\n" + segments.prefix


async def tabby_completion(state: ServerState, body: dict, http: Request) -> Response:
    """Tabby's completion for ``body``: FIM when there is text after the cursor."""
    try:
        # Off the loop: OpenAI's route, which shares the path, left the text unchecked.
        request = await run_in_threadpool(parse_request, body, TabbyCompletionRequest)
        segments = request.segments
        language = editor_language(request.language)
        prefix = await run_in_threadpool(with_snippets, segments, language)  # MiBs of snippets
        params = generation_params(
            state,
            max_tokens=DEFAULT_MAX_TOKENS,
            temperature=request.temperature or 0.0,
            seed=request.seed,
            stop=("\n",) if single_line(segments.suffix) else (),
            language=language,
        )
        if segments.suffix:
            ids = await infill_prompt_ids(state, prefix, segments.suffix, params.max_tokens)
        else:
            ids = await plain_prompt_ids(state, prefix, params.max_tokens)
        document = document_key(
            http, "tabby", segments.filepath, git_url=segments.git_url, user=request.user
        )
        handle = submit(state, ids, params, document=document)
        completion = await unless_disconnected(http, handle.result(), handle.cancel)
    except RequestError as err:
        return error_response(err)
    text = completion.text if completion.finish_reason != "cancelled" else ""
    return JSONResponse({"id": f"cmpl-{uuid.uuid4()}", "choices": [{"index": 0, "text": text}]})


def _device(state: ServerState) -> str:
    device = getattr(state.model.runner, "device", "cpu")
    return torch.device(device).type


def _cuda_devices() -> list[str]:
    if not torch.cuda.is_available():
        return []
    return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]


def health_body(state: ServerState) -> dict:
    """Tabby's ``HealthState``: tabby-agent needs ``model`` and ``device`` to call it healthy."""
    return {
        "model": state.model.name,
        "chat_model": None,
        "chat_device": None,
        "device": _device(state),
        "arch": platform.machine(),
        "cpu_info": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count() or 1,
        "cuda_devices": _cuda_devices(),
        "version": {
            "build_date": "",
            "build_timestamp": "",
            "git_sha": "",
            "git_describe": TABBY_API_VERSION,
            "geex": __version__,
        },
        "webserver": False,
    }


def router(state: ServerState) -> APIRouter:
    """Tabby's routes but ``/v1/completions`` (the OpenAI route dispatches Tabby's bodies)."""
    routes = APIRouter(tags=["tabby"])
    health = health_body(state)  # fixed for the server's life: /v1/health stays instant

    @routes.get("/v1/health")
    @routes.post("/v1/health")
    async def tabby_health() -> dict:
        return health

    @routes.get("/v1beta/server_setting")
    async def server_setting() -> dict:
        # Geex sends nothing anywhere; the agent's own telemetry is the user's to configure.
        return {"disable_client_side_telemetry": False}

    @routes.post("/v1/events")
    async def events(request: Request) -> Response:
        body = await request.body()
        log.debug("tabby event %s: %s", request.query_params.get("select_kind"), body[:2000])
        return Response(status_code=200)

    return routes
