"""``POST /v1/tasks/{task}``: the assistant's tasks over HTTP, for editors and ``geex task``.

The body holds the task's fields (:mod:`geex.serve.tasks`) and the generation options below;
the answer is the task's text, already cut::

    {"id": "task-...", "object": "task", "task": "translate", "model": NAME,
     "text": "...", "finish_reason": "stop" | "length" | "cancelled", "usage": {...}}

With ``"stream": true`` it comes as server-sent events ``data: {"text": "..."}``, then
``data: {"finish_reason": ..., "usage": {...}}`` and ``data: [DONE]``; a failure after the
stream has begun is an event ``data: {"error": {...}}``. Errors are OpenAI's error objects.
A ``document`` (an editor's file name) lets a newer request of the same task, client (API key
and ``user``) and file cancel the older.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator

import pydantic
from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict
from starlette.concurrency import run_in_threadpool

from geex.errors import GeexError
from geex.serve.engine import EngineBusy, GenerationParams, RequestHandle
from geex.serve.infill import document_key
from geex.serve.limits import CountedStream, LimitExceeded, allowed_max_tokens, prompt_room
from geex.serve.openai_api import STREAM_END, ApiError, busy_error, error_body, usage
from geex.serve.request_body import RequestError, read_json
from geex.serve.state import ServeLimits
from geex.serve.tasks import AnswerCutter, TaskPrompt, task_class
from geex.serve.waiting import unless_disconnected

log = logging.getLogger("geex.serve")

# The engine's reasons as the API reports them: the end of the document is a stop too.
_FINISH = {"stop": "stop", "eos": "stop", "length": "length", "cancelled": "cancelled"}


class TaskOptions(BaseModel):
    """The generation options every task takes. Greedy by default: an editor asking the same
    thing of the same selection should get the same answer."""

    model_config = ConfigDict(extra="ignore")

    model: str | None = None
    max_tokens: int | None = None  # None: the task's own default
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    seed: int | None = None
    stream: bool = False
    document: str | None = None
    user: str | None = None  # OpenAI's field: with the API key, whose document it is


def _validation_error(err: pydantic.ValidationError) -> ApiError:
    first = err.errors()[0]
    field = ".".join(str(part) for part in first.get("loc", ())) or None
    message = f"{field}: {first['msg']}" if field else first["msg"]
    return ApiError(message, param=field)


def _check_options(options: TaskOptions, model_name: str, limits: ServeLimits) -> None:
    """The model and the token cap; GenerationParams checks the sampling values."""
    if options.model is not None and options.model != model_name:
        raise ApiError(
            f"the model {options.model!r} is not served here; this server serves {model_name!r}",
            status=404,
            param="model",
            code="model_not_found",
        )
    if options.max_tokens is not None:
        try:
            allowed_max_tokens(limits, options.max_tokens, cap=False)
        except LimitExceeded as err:
            raise ApiError(str(err), param=err.param) from None


def _prompt_ids(state, prompt: TaskPrompt, max_tokens: int) -> list[int]:
    """The prompt's token ids (run in a worker thread: tokenizing a big file takes time)."""
    model, limit = state.model, state.prompt_budget()
    if prompt.fim is not None and model.fim is None:
        raise ApiError(
            f"the model {model.name!r} has no fill-in-the-middle tokens: use the 'complete' task",
            param="suffix",
        )
    try:
        if prompt.fim is not None:
            # Editors send whole files: the prefix and suffix are cut to leave room to generate.
            room = prompt_room(state, max_tokens)
            return model.fim_prompt_ids(*prompt.fim, max_prompt_tokens=room)
        if prompt.messages is not None:
            ids = model.chat_prompt_ids([dict(m) for m in prompt.messages])
        else:
            ids = model.codec.encode(prompt.text)
    except GeexError as err:  # a chat template's error, a budget too small for the FIM tokens
        raise ApiError(f"cannot build the prompt: {err}") from None
    if len(ids) > limit:
        raise ApiError(
            f"the prompt has {len(ids)} tokens; this server takes at most {limit} (the model's "
            f"context is {model.context_length}): send less code",
            code="context_length_exceeded",
        )
    return ids


def router(state) -> APIRouter:
    """The task routes over a :class:`~geex.serve.state.ServerState`."""
    routes = APIRouter()

    @routes.post("/v1/tasks/{task}")
    async def run_task(task: str, request: Request):
        try:
            task_type = task_class(task)
        except GeexError as err:
            raise ApiError(str(err), status=404, param="task") from None
        try:
            body = await read_json(request)
        except RequestError as err:
            raise ApiError.of(err) from None
        try:
            options = TaskOptions.model_validate(body)
            names = {f.name for f in dataclasses.fields(task_type)}
            fields = {k: v for k, v in body.items() if k in names}
            asked = pydantic.TypeAdapter(task_type).validate_python(fields)
        except pydantic.ValidationError as err:
            raise _validation_error(err) from None

        model = state.model
        _check_options(options, model.name, state.limits)
        try:
            prompt = asked.prompt(chat=model.chat_template is not None)
        except GeexError as err:
            raise ApiError(str(err)) from None
        max_tokens = options.max_tokens
        if max_tokens is None:  # the task's own length, within the server's cap
            max_tokens = min(task_type.default_max_tokens, state.limits.max_tokens)
        try:
            params = GenerationParams(
                max_tokens=max_tokens,
                temperature=options.temperature,
                top_p=options.top_p,
                top_k=options.top_k,
                seed=options.seed,
                repetition_penalty=model.penalty(None),  # the model's own, if it has one
                # A chat prompt's answer ends where the model's chat ends (OpenAI's chat alike).
                server_stop=(
                    *prompt.stop,
                    *(model.chat_stop if prompt.messages is not None else ()),
                ),
                language=prompt.language,
                stop_token_ids=frozenset(model.stop_token_ids),
            )
        except GeexError as err:
            raise ApiError(str(err)) from None
        ids = await run_in_threadpool(_prompt_ids, state, prompt, max_tokens)
        try:
            with state.streams.held(options.stream):
                document = document_key(
                    request, f"task {task}", options.document, user=options.user
                )
                (handle,) = state.engine.submit(ids, params, document=document)
        except (EngineBusy, LimitExceeded) as err:
            raise busy_error(str(err), err.retry_after) from None
        except GeexError as err:
            raise ApiError(str(err)) from None

        answer = _Answer(task, model.name, handle, prompt)
        if options.stream:
            return CountedStream(
                answer.events(),
                state.streams,
                media_type="text/event-stream",
                on_close=lambda: None if handle.done else handle.cancel(),
            )
        try:
            return await unless_disconnected(request, answer.whole(), handle.cancel)
        except RequestError as err:
            raise ApiError.of(err) from None

    return routes


class _Answer:
    """One task's generation, cut as it arrives; ``whole()`` or ``events()`` reads it."""

    def __init__(self, task: str, model: str, handle: RequestHandle, prompt: TaskPrompt) -> None:
        self.task, self.model, self.handle = task, model, handle
        self.head = prompt.head
        self.cutter = AnswerCutter(prompt.cut)

    async def pieces(self) -> AsyncIterator[str]:
        """The answer's text in pieces; the generation is cancelled once the cut has ended it."""
        if self.head:
            yield self.head
        async for piece in self.handle.stream():
            text = self.cutter.feed(piece)
            if text:
                yield text
            if self.cutter.done:
                self.handle.cancel()
                return
        if text := self.cutter.finish():
            yield text

    async def ending(self) -> tuple[str, dict]:
        result = await self.handle.result()
        reason = "stop" if self.cutter.done else _FINISH.get(result.finish_reason, "stop")
        return reason, usage(self.handle.prompt_tokens, result.num_tokens)

    async def whole(self) -> dict:
        text = "".join([piece async for piece in self.pieces()])
        reason, counts = await self.ending()
        return {
            "id": f"task-{uuid.uuid4().hex}",
            "object": "task",
            "created": int(time.time()),
            "task": self.task,
            "model": self.model,
            "text": text,
            "finish_reason": reason,
            "usage": counts,
        }

    async def events(self) -> AsyncIterator[str]:
        ended = False
        try:
            async for piece in self.pieces():
                yield f"data: {json.dumps({'text': piece})}\n\n"
            reason, counts = await self.ending()
            ended = True
            yield f"data: {json.dumps({'finish_reason': reason, 'usage': counts})}\n\n"
        except GeexError as err:
            yield f"data: {json.dumps(error_body(str(err)))}\n\n"
        except Exception as err:  # the status line has gone out: report it in the stream
            log.exception("streamed task failed")
            body = error_body(f"internal error: {type(err).__name__}: {err}", kind="server_error")
            yield f"data: {json.dumps(body)}\n\n"
        finally:
            if not ended:  # the client left, or the generation failed: free its slot
                self.handle.cancel()
        yield STREAM_END
