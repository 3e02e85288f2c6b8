"""llama.cpp server's completion API, for the editor plugins built on it (llama.vim,
llama.vscode)::

    POST /infill       input_prefix, input_suffix, input_extra [{filename, text}], prompt
    POST /completion   prompt

(``GET /health`` is the server's own, whose ``{"status": "ok"}`` is llama.cpp's answer too.)

``input_extra`` is context from other files: each goes before the prefix, headed by its file
name (as a comment of the file's language when Geex knows it), since a model without
repository-level FIM tokens has no other place for it. ``prompt`` is text after the prefix,
as llama.cpp places it. Streaming answers are server-sent events ``data: {"content", "stop"}``,
the last with ``"stop": true`` and the counts; there is no ``[DONE]``, and a failure after
the first event is an ``error: {...}`` event, as llama.cpp sends it. Errors are
``{"error": {"code", "message", "type"}}``; infilling with a model that has no FIM tokens is
llama.cpp's 501 ``not_supported_error``. Defaults are llama.cpp's (temperature 0.8, top_k 40,
top_p 0.95, no repetition penalty unless the model's folder names one; ``n_predict`` -1 runs to
the server's token cap, and 0 generates nothing: llama.vim sends it to have other files' text
read ahead).
"""

from __future__ import annotations

import json
import logging
import time

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from geex.languages import detect_language
from geex.serve.engine import Completion, RequestHandle
from geex.serve.infill import (
    AnswerShape,
    RequestError,
    answer,
    document_key,
    generation_params,
    infill_prompt_ids,
    plain_prompt_ids,
    read_request,
    repeat_options,
    stream_slot,
    submit,
)
from geex.serve.state import ServerState

log = logging.getLogger("geex.serve.llamacpp")

STOP_TYPES = {"eos": "eos", "length": "limit", "stop": "word", "cancelled": "none"}
ERROR_TYPES = {400: "invalid_request_error", 429: "unavailable_error", 501: "not_supported_error"}


class ExtraContext(BaseModel):
    model_config = ConfigDict(extra="ignore")

    filename: str = ""
    text: str = ""


class CompletionRequest(BaseModel):
    """``/completion``'s fields; ``/infill`` adds its own below. Unknown fields are ignored."""

    model_config = ConfigDict(extra="ignore")

    prompt: str = ""
    n_predict: int = -1
    temperature: float = 0.8
    top_k: int = 40
    top_p: float = 0.95
    seed: int = -1  # -1: a random seed
    repeat_penalty: float | None = None  # none: the model's, else llama.cpp's 1 (off)
    repeat_last_n: int = 64  # 0: no penalty, -1: the whole context
    stop: list[str] = Field(default_factory=list)
    stream: bool = False


class InfillRequest(CompletionRequest):
    input_prefix: str = ""
    input_suffix: str = ""
    input_extra: list[ExtraContext] = Field(default_factory=list)
    filename: str | None = None  # not llama.cpp's: the file, so a newer request cancels this


def error_response(err: RequestError) -> JSONResponse:
    kind = ERROR_TYPES.get(err.status, "server_error")
    body = {"error": {"code": err.status, "message": err.message, "type": kind}}
    return JSONResponse(body, status_code=err.status, headers=err.headers())


def extra_context(chunks: list[ExtraContext]) -> str:
    """Other files' text, each after a line naming its file."""
    parts = []
    for chunk in chunks:
        language = detect_language(chunk.filename) if chunk.filename else None
        comment = language.line_comment if language else None
        header = f"{comment} {chunk.filename}" if comment else chunk.filename
        text = chunk.text if chunk.text.endswith("\n") else chunk.text + "\n"
        parts.append(f"{header}\n{text}" if header else text)
    return "".join(parts)


def _params(state: ServerState, body: CompletionRequest):
    return generation_params(
        state,
        max_tokens=body.n_predict,
        temperature=body.temperature,
        top_p=body.top_p,
        top_k=body.top_k,
        seed=body.seed if body.seed >= 0 else None,
        **repeat_options(body.repeat_penalty, body.repeat_last_n),
        stop=body.stop,
    )


def _final(
    state: ServerState, prompt_tokens: int, predicted: int, stop_type: str, ms: float
) -> dict:
    return {
        "stop": True,
        "model": state.model.name,
        "tokens_predicted": predicted,
        "tokens_evaluated": prompt_tokens,
        "stop_type": stop_type,
        "stopping_word": "",
        "truncated": False,
        "timings": {"prompt_n": prompt_tokens, "predicted_n": predicted, "predicted_ms": ms},
    }


def _nothing_predicted(state: ServerState, prompt_tokens: int, stream: bool) -> Response:
    """llama.cpp's answer to ``n_predict`` 0: the prompt read, no token generated. llama.vim
    sends such requests as its user moves about, to fill the server's cache with other files'
    text; decoding a completion for each would keep the model busy for nothing."""
    fields = {"index": 0, "content": "", **_final(state, prompt_tokens, 0, "limit", 0.0)}
    if stream:
        return Response(f"data: {json.dumps(fields)}\n\n", media_type="text/event-stream")
    return JSONResponse(fields)


async def _answer(
    state: ServerState, request: Request, handle: RequestHandle, stream: bool
) -> Response:
    started = time.perf_counter()

    def event(fields: dict) -> str:
        return f"data: {json.dumps(fields)}\n\n"

    def failed(err: Exception) -> str:
        body = {"error": {"code": 500, "message": str(err), "type": "server_error"}}
        return f"error: {json.dumps(body)}\n\n"

    def whole(completion: Completion, text: str) -> dict:
        elapsed_ms = (time.perf_counter() - started) * 1000
        stop_type = STOP_TYPES[completion.finish_reason]
        counts = _final(state, handle.prompt_tokens, completion.num_tokens, stop_type, elapsed_ms)
        return {"index": 0, "content": text, **counts}

    shape = AnswerShape(
        media_type="text/event-stream",
        piece=lambda text: event({"index": 0, "content": text, "stop": False}),
        final=lambda completion: event(whole(completion, "")),
        failed=failed,
        whole=lambda completion: whole(completion, completion.text),
        error=error_response,
    )
    return await answer(state, request, handle, stream, shape)


async def infill(state: ServerState, request: Request) -> Response:
    try:
        body = await read_request(request, InfillRequest)
        if state.model.fim is None:
            raise RequestError(
                f"infill is not supported by model {state.model.name}: it has no "
                "fill-in-the-middle tokens",
                501,
            )
        # Off the loop: input_extra may be MiBs of other files' text.
        context = await run_in_threadpool(extra_context, body.input_extra)
        prefix = context + body.input_prefix + body.prompt
        params = _params(state, body)
        ids = await infill_prompt_ids(state, prefix, body.input_suffix, params.max_tokens)
        if body.n_predict == 0:
            return _nothing_predicted(state, len(ids), body.stream)
        with stream_slot(state, body.stream):
            document = document_key(request, "llama.cpp", body.filename)
            handle = submit(state, ids, params, document=document)
    except RequestError as err:
        return error_response(err)
    return await _answer(state, request, handle, body.stream)


async def completion(state: ServerState, request: Request) -> Response:
    try:
        body = await read_request(request, CompletionRequest)
        if not body.prompt:
            raise RequestError("prompt: a non-empty prompt is needed")
        params = _params(state, body)
        ids = await plain_prompt_ids(state, body.prompt, params.max_tokens)
        if body.n_predict == 0:
            return _nothing_predicted(state, len(ids), body.stream)
        with stream_slot(state, body.stream):
            handle = submit(state, ids, params)
    except RequestError as err:
        return error_response(err)
    return await _answer(state, request, handle, body.stream)


def router(state: ServerState) -> APIRouter:
    routes = APIRouter(tags=["llama.cpp"])

    @routes.post("/infill")
    async def infill_route(request: Request) -> Response:
        return await infill(state, request)

    @routes.post("/completion")
    async def completion_route(request: Request) -> Response:
        return await completion(state, request)

    return routes
