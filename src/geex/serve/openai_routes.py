"""OpenAI's ``/v1/models``, ``/v1/completions`` (with ``suffix``) and ``/v1/chat/completions``
on the engine.

A thin adapter, as vLLM's entrypoints are: check the request, build the prompt ids off the
event loop (tokenizing a 4 MiB file takes long enough to stall every stream), submit them to
the engine, and turn its handles into OpenAI's JSON or server-sent events. The model is reached
only through :class:`~geex.serve.models.ServedModel`'s prompt builders and the engine.

Prompts that cannot be cut (a plain completion, a chat) must fit the prompt budget, else a 400
``context_length_exceeded``; a fill-in-the-middle prompt is cut to fit instead (the prefix loses
its start, the suffix its end), as editors send whole files and expect that.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Sequence

import pydantic
from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from starlette.concurrency import run_in_threadpool

from geex.errors import GeexError
from geex.languages import get_language
from geex.serve import tabby_api
from geex.serve.completion import with_language_tag
from geex.serve.engine import EngineBusy, GenerationParams, RequestHandle
from geex.serve.limits import (
    CountedStream,
    LimitExceeded,
    allowed_max_tokens,
    check_prompt_tokens,
    check_samples,
    prompt_room,
)
from geex.serve.openai_api import (
    FINISH_REASONS,
    STREAM_END,
    ApiError,
    ChatCompletionRequest,
    CompletionRequest,
    busy_error,
    check_chat,
    check_completion,
    delta_choice,
    error_event,
    new_id,
    response_body,
    stream_event,
    text_choice,
    usage,
)
from geex.serve.request_body import RequestError, check_text_of, read_json
from geex.serve.state import ServerState
from geex.serve.waiting import unless_disconnected

log = logging.getLogger("geex.serve")


def router(state: ServerState) -> APIRouter:
    """The OpenAI routes over ``state``'s model and engine."""
    api = APIRouter()
    name = state.model.name

    entry = {"id": name, "object": "model", "created": state.model.created, "owned_by": "geex"}

    @api.get("/v1/models")
    async def models() -> dict:
        return {"object": "list", "data": [entry]}

    @api.get("/v1/models/{model_id:path}")
    async def model(model_id: str) -> dict:
        if model_id != name:
            raise ApiError(f"the model {model_id!r} is not served here; this server serves "
                           f"{name!r}", status=404, param="model", code="model_not_found")  # fmt: skip
        return entry

    @api.post("/v1/completions")
    async def completions(request: Request):
        data = await _json_body(request, check_text=False)  # Tabby's errors are its own
        if tabby_api.is_tabby_request(data):  # Tabby's editor agent posts to the same path
            return await tabby_api.tabby_completion(state, data, request)
        try:
            await run_in_threadpool(check_text_of, data)
        except RequestError as err:
            raise ApiError.of(err) from None
        body = _validated(CompletionRequest, data)
        check_completion(body, name)
        with _as_api_error():
            allowed_max_tokens(state.limits, body.max_tokens, cap=False)
            check_samples(state.limits, body.n, len(body.prompts))
        check_unicode("prompt", *body.prompts)
        check_unicode("suffix", body.suffix)
        check_unicode("stop", *body.stop_sequences)
        language = get_language(body.language) if body.language else None
        prompt_ids = await run_in_threadpool(_completion_prompts, state, body, language)
        params = _params(state, body, body.max_tokens, language)
        echoes = [p if body.echo else "" for p in body.prompts for _ in range(body.n)]
        prompt_tokens = sum(len(ids) for ids in prompt_ids)
        if body.stream:
            return _stream(state, prompt_ids, params, body, prompt_tokens, chat=False,
                           echoes=echoes)  # fmt: skip
        handles = _submit(state, prompt_ids, params, body.n)
        results = await _results(request, handles)
        return response_body(
            new_id("cmpl"),
            name,
            [echo + c.text for echo, c in zip(echoes, results, strict=True)],
            [FINISH_REASONS[c.finish_reason] for c in results],
            prompt_tokens,
            sum(c.num_tokens for c in results),
            chat=False,
        )

    @api.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        body = _validated(ChatCompletionRequest, await _json_body(request))
        check_chat(body, name)
        with _as_api_error():
            max_tokens = allowed_max_tokens(state.limits, body.token_limit, cap=False)
            check_samples(state.limits, body.n)
        messages = body.message_dicts()
        check_unicode("messages", *(m["content"] for m in messages), *(m["role"] for m in messages))
        check_unicode("stop", *body.stop_sequences)
        ids = await run_in_threadpool(_guarded, "messages", state.model.chat_prompt_ids, messages)
        with _as_api_error():
            check_prompt_tokens(state, len(ids), "messages")
        params = _params(state, body, max_tokens, None, state.model.chat_stop)
        if body.stream:
            return _stream(state, [ids], params, body, len(ids), chat=True)
        handles = _submit(state, [ids], params, body.n)
        results = await _results(request, handles)
        return response_body(
            new_id("chatcmpl"),
            name,
            [c.text for c in results],
            [FINISH_REASONS[c.finish_reason] for c in results],
            len(ids),
            sum(c.num_tokens for c in results),
            chat=True,
        )

    return api


async def _json_body(request: Request, check_text: bool = True) -> dict:
    """The parsed body; FastAPI's own parsing is bypassed so that every protocol reads bodies
    alike (and two protocols can share a path)."""
    try:
        return await read_json(request, check_text=check_text)
    except RequestError as err:
        raise ApiError.of(err) from None


def _validated(model: type[pydantic.BaseModel], data: dict):
    try:
        return model.model_validate(data)
    except pydantic.ValidationError as err:  # answered as FastAPI's own validation errors
        raise RequestValidationError(err.errors()) from None


@contextlib.contextmanager
def _as_api_error():
    """A server limit, answered in OpenAI's shape (429s carry ``Retry-After``)."""
    try:
        yield
    except LimitExceeded as err:
        if err.status == 429:
            raise busy_error(str(err), err.retry_after) from None
        headers = {"Retry-After": str(err.retry_after)} if err.retry_after else None
        raise ApiError(str(err), status=err.status, param=err.param, code=err.code,
                       headers=headers) from None  # fmt: skip


def check_unicode(param: str, *texts: str | None) -> None:
    """JSON may carry lone surrogates (``"\\ud800"``), which no tokenizer can take: a 400."""
    for text in texts:
        try:
            (text or "").encode("utf-8")
        except UnicodeEncodeError as err:
            raise ApiError(
                f"{param}: the text is not valid Unicode ({err.reason} at {err.start})",
                param=param,
            ) from None


def _guarded(param: str, build: Callable, *args, **kwargs) -> list[int]:
    """A prompt builder's ids; its refusal (a template that fails) is a 400."""
    try:
        return build(*args, **kwargs)
    except GeexError as err:
        raise ApiError(f"{param}: {err}", param=param) from None


def _completion_prompts(state: ServerState, body: CompletionRequest, language) -> list[list[int]]:
    """Each prompt's ids: framed for infilling (and cut to fit) with a suffix, else whole."""
    model = state.model
    prompts = [with_language_tag(p, language) if language else p for p in body.prompts]
    # An empty suffix (the cursor at the end of the file) is an infill only for a FIM model.
    if body.suffix or (body.suffix is not None and model.fim is not None):
        if model.fim is None:
            raise ApiError(
                f"the model {model.name} has no fill-in-the-middle tokens, so a suffix cannot be "
                "served; if it was trained with a FIM format, name it with geex serve --fim-style",
                param="suffix",
            )
        budget = prompt_room(state, body.max_tokens)
        return [
            _guarded("suffix", model.fim_prompt_ids, p, body.suffix, max_prompt_tokens=budget)
            for p in prompts
        ]
    ids = [_guarded("prompt", model.codec.encode, p) for p in prompts]
    for one in ids:
        with _as_api_error():
            check_prompt_tokens(state, len(one))
        if not one:
            raise ApiError("prompt is empty: give some text to continue", param="prompt")
    return ids


def _params(
    state: ServerState, body, max_tokens: int, language, extra_stop: tuple[str, ...] = ()
) -> GenerationParams:
    try:
        return GenerationParams(
            max_tokens=max_tokens,
            temperature=body.temperature,
            top_p=body.top_p,
            top_k=body.top_k,
            seed=body.seed,
            repetition_penalty=state.model.penalty(body.repetition_penalty),
            stop=tuple(body.stop_sequences),
            server_stop=extra_stop,
            language=language,
            stop_token_ids=state.model.stop_token_ids,
        )
    except GeexError as err:
        raise ApiError(str(err)) from None


def _submit(
    state: ServerState, prompt_ids: list[list[int]], params: GenerationParams, n: int
) -> list[RequestHandle]:
    """Every (prompt, sample) handle, prompt-major; all or none are queued."""
    handles: list[RequestHandle] = []
    try:
        for ids in prompt_ids:
            handles += state.engine.submit(ids, params, n=n)
    except EngineBusy as err:
        _cancel(handles)
        raise busy_error(str(err), err.retry_after) from None
    except GeexError as err:
        _cancel(handles)
        raise ApiError(str(err), param="prompt") from None
    return handles


def _cancel(handles: Sequence[RequestHandle]) -> None:
    for handle in handles:
        handle.cancel()


async def _results(request: Request, handles: list[RequestHandle]) -> list:
    """Every handle's completion; a client that hangs up cancels them (its slot is freed)."""
    waiter = asyncio.gather(*(handle.result() for handle in handles))
    try:
        return await unless_disconnected(request, waiter, lambda: _cancel(handles))
    except RequestError as err:
        raise ApiError.of(err) from None


def _stream(state: ServerState, prompt_ids, params, body, prompt_tokens: int, *, chat: bool,
            echoes: Sequence[str] = ()) -> CountedStream:  # fmt: skip
    """Submit and stream: each choice's pieces as they are decoded, its finish, then [DONE]."""
    with _as_api_error(), state.streams.held():
        handles = _submit(state, prompt_ids, params, body.n)
    completion_id = new_id("chatcmpl" if chat else "cmpl")
    name = state.model.name

    def event(choices: list[dict], usage_fields: dict | None = None) -> str:
        return stream_event(completion_id, name, choices, chat=chat, usage_fields=usage_fields,
                            with_usage=body.include_usage_chunk)  # fmt: skip

    def piece(index: int, text: str) -> dict:
        return delta_choice(index, {"content": text}) if chat else text_choice(index, text)

    def finish(index: int, reason: str) -> dict:
        return delta_choice(index, {}, reason) if chat else text_choice(index, "", reason)

    async def events() -> AsyncIterator[str]:
        for index, echo in enumerate(echoes):
            if echo:
                yield event([piece(index, echo)])
        if chat:
            for index in range(len(handles)):
                yield event([delta_choice(index, {"role": "assistant", "content": ""})])
        generated = 0
        async for index, text in _merged(handles):
            if text is not None:
                yield event([piece(index, text)])
                continue
            try:
                result = await handles[index].result()
            except Exception as err:  # the status line has gone out: report it in the stream
                log.exception("a streamed request failed")
                yield error_event(f"internal error: {type(err).__name__}: {err}")
                yield STREAM_END
                return
            generated += result.num_tokens
            yield event([finish(index, FINISH_REASONS[result.finish_reason])])
        if body.include_usage_chunk:
            yield event([], usage(prompt_tokens, generated))
        yield STREAM_END

    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return CountedStream(
        events(),
        state.streams,
        media_type="text/event-stream",
        on_close=lambda: _cancel([h for h in handles if not h.done]),
        headers=headers,
    )


async def _merged(handles: list[RequestHandle]) -> AsyncIterator[tuple[int, str | None]]:
    """``(index, piece)`` from every handle as they come; ``(index, None)`` when one ends."""
    if len(handles) == 1:
        async for text in handles[0].stream():
            yield 0, text
        yield 0, None
        return
    queue: asyncio.Queue = asyncio.Queue()

    async def pump(index: int, handle: RequestHandle) -> None:
        try:
            async for text in handle.stream():
                queue.put_nowait((index, text))
        finally:
            queue.put_nowait((index, None))

    pumps = [asyncio.create_task(pump(i, h)) for i, h in enumerate(handles)]
    try:
        for _ in range(len(handles)):
            while (item := await queue.get())[1] is not None:
                yield item
            yield item
    finally:
        for task in pumps:
            task.cancel()
