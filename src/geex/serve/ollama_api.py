"""Ollama's HTTP API, for the editors and tools that speak it (Continue, Zed, llm-ls, Open WebUI)::

    POST /api/generate   prompt (+ suffix: fill in the middle), system, raw, options
    POST /api/chat       messages
    GET  /api/tags       the one model served
    POST /api/show       its details and capabilities ("insert" when it can fill in the middle)
    GET  /api/version

Ollama streams by default: one JSON object per line (``application/x-ndjson``), each with a
piece of ``response`` (or ``message.content``) and ``"done": false``, then a last one with
``"done": true``, the ``done_reason`` and the counts and durations (in nanoseconds). Errors are
``{"error": message}``, also as a line of a stream that has begun. Defaults are Ollama's
(temperature 0.8, top_k 40, top_p 0.9, repeat_penalty 1.1, this one replaced by the model's
own where its folder has one, as a Modelfile's PARAMETER replaces it); ``num_predict`` -1 runs
to the server's token cap.
A model named other than the served one is a 404, as Ollama answers for a model it lacks;
``format``, ``images`` and ``tools`` are refused with a 400 rather than silently ignored.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from datetime import datetime, timezone

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request

from geex.serve.engine import Completion, RequestHandle
from geex.serve.infill import (
    AnswerShape,
    RequestError,
    answer,
    chat_prompt_ids,
    generation_params,
    infill_prompt_ids,
    plain_prompt_ids,
    read_request,
    repeat_options,
    stream_slot,
    submit,
)
from geex.serve.infill import (
    plain_error_response as error_response,
)
from geex.serve.state import ServerState

log = logging.getLogger("geex.serve.ollama")

# The Ollama release whose API shapes this module follows (clients gate features on it).
OLLAMA_API_VERSION = "0.5.0"
DONE_REASONS = {"stop": "stop", "eos": "stop", "length": "length", "cancelled": "stop"}
# Ollama's repeat_penalty where neither the request nor the model sets one.
OLLAMA_REPEAT_PENALTY = 1.1


class Options(BaseModel):
    model_config = ConfigDict(extra="ignore")

    temperature: float = 0.8
    top_p: float = 0.9
    top_k: int = 40
    num_predict: int | None = None  # -1 (or none): up to the server's cap
    stop: list[str] = Field(default_factory=list)
    seed: int | None = None  # negative: a random seed, as Ollama takes -1
    repeat_penalty: float | None = None  # none: the model's, else Ollama's 1.1
    repeat_last_n: int = 64  # 0: no penalty, -1: the whole context


class GenerateRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str
    prompt: str = ""
    suffix: str | None = None
    system: str | None = None
    raw: bool = False
    stream: bool = True
    options: Options = Field(default_factory=Options)
    format: object = None  # refused: see unsupported()
    images: list | None = None


class Message(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: str
    content: str = ""
    images: list | None = None


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str
    messages: list[Message] = Field(default_factory=list)
    stream: bool = True
    options: Options = Field(default_factory=Options)
    format: object = None
    tools: list | None = None


class ShowRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str | None = None
    name: str | None = None  # the field's name before Ollama 0.3


def _now() -> str:
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


def _check_model(state: ServerState, name: str | None) -> None:
    served = state.model.name
    if name and name not in (served, f"{served}:latest"):
        raise RequestError(f"model '{name}' not found; this server serves '{served}'", 404)


def unsupported(body: GenerateRequest | ChatRequest) -> None:
    """Refuse what a code model served here cannot honour, rather than ignore it silently."""
    if body.format:
        raise RequestError("format: structured (JSON) output is not supported by geex serve")
    messages = body.messages if isinstance(body, ChatRequest) else [body]
    if any(m.images for m in messages):
        raise RequestError("images: the served model reads text only")
    if isinstance(body, ChatRequest) and body.tools:
        raise RequestError("tools: tool calling is not supported by geex serve")


def _parameters(repetition_penalty: float | None) -> str:
    return "" if repetition_penalty is None else f"repeat_penalty {repetition_penalty:g}"


def _params(state: ServerState, options: Options, stop: tuple[str, ...] = ()):
    return generation_params(
        state,
        max_tokens=options.num_predict,
        temperature=options.temperature,
        top_p=options.top_p,
        top_k=options.top_k,
        seed=options.seed if options.seed is not None and options.seed >= 0 else None,
        **repeat_options(options.repeat_penalty, options.repeat_last_n),
        penalty_fallback=OLLAMA_REPEAT_PENALTY,
        stop=tuple(options.stop),
        server_stop=stop,
    )


def _stats(handle: RequestHandle, completion: Completion, started: float, first: float) -> dict:
    end = time.perf_counter()
    ns = 1_000_000_000
    return {
        "done_reason": DONE_REASONS[completion.finish_reason],
        "total_duration": int((end - started) * ns),
        "load_duration": 0,
        "prompt_eval_count": handle.prompt_tokens,
        "prompt_eval_duration": int((first - started) * ns),
        "eval_count": completion.num_tokens,
        "eval_duration": int((end - first) * ns),
    }


async def _answer(
    state: ServerState,
    request: Request,
    handle: RequestHandle,
    stream: bool,
    piece_fields: Callable[[str], dict],
) -> Response:
    """The generation as Ollama sends it: NDJSON lines, or one object with the whole text."""
    name = state.model.name
    started = time.perf_counter()
    first: list[float] = []  # when the first piece came

    def line(text: str, **fields) -> dict:
        return {"model": name, "created_at": _now(), **piece_fields(text), **fields}

    def piece(text: str) -> str:
        first[:] = first or [time.perf_counter()]
        return json.dumps(line(text, done=False)) + "\n"

    def stats(completion: Completion) -> dict:
        return _stats(handle, completion, started, first[0] if first else started)

    shape = AnswerShape(
        media_type="application/x-ndjson",
        piece=piece,
        final=lambda completion: json.dumps(line("", done=True, **stats(completion))) + "\n",
        failed=lambda err: json.dumps({"error": str(err)}) + "\n",
        whole=lambda completion: line(completion.text, done=True, **stats(completion)),
        error=error_response,
    )
    return await answer(state, request, handle, stream, shape)


async def generate(state: ServerState, request: Request) -> Response:
    try:
        body = await read_request(request, GenerateRequest)
        _check_model(state, body.model)
        unsupported(body)
        if not body.prompt and not body.suffix:
            # Ollama's way to load a model: an empty prompt answers at once.
            done = {"model": state.model.name, "created_at": _now(), "response": ""}
            return JSONResponse({**done, "done": True, "done_reason": "load"})
        params = _params(state, body.options)
        if body.suffix:
            ids = await infill_prompt_ids(state, body.prompt, body.suffix, params.max_tokens)
        elif not body.raw and state.model.chat_template is not None:
            messages = [{"role": "system", "content": body.system}] if body.system else []
            messages.append({"role": "user", "content": body.prompt})
            ids = await chat_prompt_ids(state, messages)
        else:
            text = (
                f"{body.system}\n\n{body.prompt}" if body.system and not body.raw else body.prompt
            )
            ids = await plain_prompt_ids(state, text, params.max_tokens)
        with stream_slot(state, body.stream):
            handle = submit(state, ids, params)
    except RequestError as err:
        return error_response(err)
    return await _answer(state, request, handle, body.stream, lambda text: {"response": text})


async def chat(state: ServerState, request: Request) -> Response:
    try:
        body = await read_request(request, ChatRequest)
        _check_model(state, body.model)
        unsupported(body)
        if not body.messages:
            raise RequestError("messages: at least one message is needed")
        ids = await chat_prompt_ids(state, [m.model_dump() for m in body.messages])
        # A base model's transcript goes on with the next turn: the answer ends before it.
        params = _params(state, body.options, stop=state.model.chat_stop)
        with stream_slot(state, body.stream):
            handle = submit(state, ids, params)
    except RequestError as err:
        return error_response(err)

    def message(text: str) -> dict:
        return {"message": {"role": "assistant", "content": text}}

    return await _answer(state, request, handle, body.stream, message)


def _details(state: ServerState) -> dict:
    return {
        "parent_model": "",
        "format": "safetensors",
        "family": state.model.kind,
        "families": [state.model.kind],
        "parameter_size": "",
        "quantization_level": "",
    }


def router(state: ServerState) -> APIRouter:
    routes = APIRouter(tags=["ollama"])
    name = state.model.name
    modified = datetime.fromtimestamp(state.model.created, timezone.utc).isoformat()

    @routes.post("/api/generate")
    async def api_generate(request: Request) -> Response:
        return await generate(state, request)

    @routes.post("/api/chat")
    async def api_chat(request: Request) -> Response:
        return await chat(state, request)

    @routes.get("/api/tags")
    async def tags() -> dict:
        entry = {
            "name": name,
            "model": name,
            "modified_at": modified,
            "size": 0,
            "digest": hashlib.sha256(name.encode()).hexdigest(),
            "details": _details(state),
        }
        return {"models": [entry]}

    @routes.post("/api/show")
    async def show(request: Request) -> Response:
        try:
            body = await read_request(request, ShowRequest)
            _check_model(state, body.model or body.name)
        except RequestError as err:
            return error_response(err)
        capabilities = ["completion", *(["insert"] if state.model.fim else [])]
        kind = state.model.kind
        return JSONResponse(
            {
                "modelfile": "",
                # As a Modelfile's PARAMETER lines: the model's own decoding default, if any
                "parameters": _parameters(state.model.repetition_penalty),
                "template": state.model.chat_template or "{{ .Prompt }}",
                "details": _details(state),
                "model_info": {
                    "general.architecture": kind,
                    f"{kind}.context_length": state.model.context_length,
                },
                "capabilities": capabilities,
                "modified_at": modified,
            }
        )

    @routes.get("/api/version")
    async def version() -> dict:
        return {"version": OLLAMA_API_VERSION}

    return routes
