"""``geex serve``: an OpenAI-compatible completion server for a Geex checkpoint.

FastAPI routes, run by uvicorn::

    GET  /health            {"status": "ok", "model": NAME}
    GET  /v1/models         the one model served
    POST /v1/completions    OpenAI's completions API (+ Geex's ``language`` field), streamed
                            as server-sent events with ``"stream": true``

Requests are served one at a time: a lock around the model lets one request decode while the
others wait their turn. The prompts and ``n`` samples of *one* request are decoded together as
a batch; batching *across* requests (continuous batching, as vLLM does) is not done yet.
Decoding runs in a worker thread, so the event loop keeps answering ``/health`` meanwhile.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from geex import __version__
from geex.errors import GeexError
from geex.languages import get_language
from geex.serve.completion import Completion, complete, with_language_tag
from geex.serve.openai_api import (
    FINISH_REASONS,
    STREAM_END,
    ApiError,
    CompletionRequest,
    check_request,
    completion_response,
    error_body,
    new_completion_id,
    stream_chunk,
    text_choice,
    usage,
)

log = logging.getLogger("geex.serve")

DEFAULT_MAX_ROWS = 256  # prompts x n per request: a bound on the KV cache one request may ask for


@dataclass
class ServedModel:
    """A model and its tokenizer, decoded by one request at a time."""

    model: object
    tokenizer: object
    name: str
    max_rows: int = DEFAULT_MAX_ROWS
    created: int = field(default_factory=lambda: int(time.time()))
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        from geex.model.loader import check_tokenizer_fits

        check_tokenizer_fits(self.tokenizer, self.model.config)

    @classmethod
    def load(
        cls,
        folder: str | os.PathLike,
        *,
        tokenizer: str | os.PathLike | None = None,
        device: str = "auto",
        dtype: str = "auto",
        quantize: str | None = None,
        name: str | None = None,
    ) -> ServedModel:
        """A Geex checkpoint folder (and its tokenizer, unless another is named)."""
        from geex.model.loader import load_for_inference

        loaded = load_for_inference(
            folder, tokenizer=tokenizer, device=device, dtype=dtype, quantize=quantize
        )
        return cls(loaded.model, loaded.tokenizer, name or loaded.name)

    def prompt_tokens(self, request: CompletionRequest) -> int:
        """Tokens the prompts take, tag lines included; too long a prompt is a 400."""
        language = get_language(request.language) if request.language else None
        context = self.model.config.max_seq_len
        total = 0
        for i, prompt in enumerate(request.prompts):
            count = len(self.tokenizer.encode(with_language_tag(prompt, language)))
            if count >= context:
                raise ApiError(
                    f"prompt {i} has {count} tokens; the model's context is {context} tokens, "
                    "and at least one must be left to generate",
                    param="prompt",
                    code="context_length_exceeded",
                )
            total += count
        return total

    def complete(
        self, request: CompletionRequest, on_text: Callable[[int, str], None] | None = None
    ) -> list[Completion]:
        """Every (prompt, sample) completion of ``request``, prompt-major, as OpenAI orders them."""
        from geex.model.sampling import SamplingConfig

        sampling = SamplingConfig(
            max_new_tokens=request.max_tokens,
            temperature=request.temperature,
            top_p=request.top_p,
            num_samples=request.n,
            seed=request.seed,
        )
        with self.lock:
            per_prompt = complete(
                self.model,
                self.tokenizer,
                request.prompts,
                language=request.language,
                sampling=sampling,
                stop=request.stop_sequences,
                add_tag=request.language is not None,
                on_text=on_text,
            )
        return [c for samples in per_prompt for c in samples]


def create_app(served: ServedModel) -> FastAPI:
    """The FastAPI application serving ``served``."""
    app = FastAPI(title="Geex", version=__version__, description="OpenAI-compatible completions")

    @app.exception_handler(ApiError)
    async def api_error(_request, err: ApiError) -> JSONResponse:
        return JSONResponse(err.body(), status_code=err.status)

    @app.exception_handler(RequestValidationError)
    async def bad_request(_request, err: RequestValidationError) -> JSONResponse:
        first = err.errors()[0] if err.errors() else {"loc": (), "msg": "invalid request"}
        if first.get("type") == "json_invalid":
            message = f"the request body is not valid JSON ({first['msg']})"
            return JSONResponse(error_body(message), status_code=400)
        # loc is ("body", field, <union member>, <index>...): the field is what a client sets.
        location = [part for part in first.get("loc", ()) if part != "body"]
        field_name = str(location[0]) if location else None
        message = f"{field_name}: {first['msg']}" if field_name else first["msg"]
        return JSONResponse(error_body(message, param=field_name), status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request, err: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(error_body(str(err.detail)), status_code=err.status_code)

    @app.exception_handler(Exception)
    async def server_error(_request, err: Exception) -> JSONResponse:
        # Starlette re-raises the exception after this answer, so uvicorn logs its traceback.
        body = error_body(f"internal error: {type(err).__name__}: {err}", kind="server_error")
        return JSONResponse(body, status_code=500)

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok", "model": served.name}

    @app.get("/v1/models")
    async def models() -> dict:
        entry = {
            "id": served.name,
            "object": "model",
            "created": served.created,
            "owned_by": "geex",
        }
        return {"object": "list", "data": [entry]}

    @app.post("/v1/completions")
    async def completions(request: CompletionRequest):
        check_request(request, served.name, served.max_rows)
        prompt_tokens = served.prompt_tokens(request)
        if request.stream:
            events = _stream(served, request, prompt_tokens)
            return StreamingResponse(events, media_type="text/event-stream")
        try:
            results = await run_in_threadpool(served.complete, request)
        except GeexError as err:
            raise ApiError(str(err)) from None
        echoed = _echoed_prompts(request)
        return completion_response(
            new_completion_id(),
            served.name,
            [echoed[i] + c.text for i, c in enumerate(results)],
            [FINISH_REASONS[c.finish_reason] for c in results],
            prompt_tokens,
            sum(c.num_tokens for c in results),
        )

    return app


def _echoed_prompts(request: CompletionRequest) -> list[str]:
    """What goes before each choice's text: its prompt with ``echo``, else nothing."""
    return [p if request.echo else "" for p in request.prompts for _ in range(request.n)]


class _ClientGone(Exception):
    """Raised inside decoding to stop it once the streaming client has disconnected."""


async def _stream(
    served: ServedModel, request: CompletionRequest, prompt_tokens: int
) -> AsyncIterator[str]:
    """Server-sent events: text as it is decoded, then each choice's finish, then [DONE].

    Decoding runs in a worker thread and hands text to the event loop through a queue; when
    the client goes away, the next piece of text stops the decoding, freeing the model.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue()
    client_gone = threading.Event()
    finished = object()

    def on_text(row: int, text: str) -> None:
        if client_gone.is_set():
            raise _ClientGone
        loop.call_soon_threadsafe(queue.put_nowait, (row, text))

    def decode() -> list[Completion]:
        try:
            return served.complete(request, on_text)
        finally:
            loop.call_soon_threadsafe(queue.put_nowait, finished)

    completion_id = new_completion_id()

    def event(choices: list[dict], usage_fields: dict | None = None) -> str:
        return stream_chunk(completion_id, served.name, choices, usage_fields)

    work = loop.run_in_executor(None, decode)
    try:
        for row, prompt in enumerate(_echoed_prompts(request)):
            if prompt:
                yield event([text_choice(row, prompt)])
        while (item := await queue.get()) is not finished:
            row, text = item
            yield event([text_choice(row, text)])
        try:
            results = await work
        except GeexError as err:
            yield f"data: {json.dumps(error_body(str(err)))}\n\n"
            yield STREAM_END
            return
        except Exception as err:  # the status line has gone out: report it in the stream
            log.exception("streamed request failed")
            body = error_body(f"internal error: {type(err).__name__}: {err}", kind="server_error")
            yield f"data: {json.dumps(body)}\n\n"
            yield STREAM_END
            return
        for row, result in enumerate(results):
            yield event([text_choice(row, "", FINISH_REASONS[result.finish_reason])])
        if request.include_usage_chunk:
            generated = sum(c.num_tokens for c in results)
            yield event([], usage(prompt_tokens, generated))
        yield STREAM_END
    finally:
        client_gone.set()
        # A decode stopped by a departed client ends in _ClientGone: nobody waits for it.
        work.add_done_callback(lambda done: done.cancelled() or done.exception())


def listening_socket(host: str, port: int) -> socket.socket:
    """A bound socket for ``host:port``; port 0 picks a free one (read it back from the socket)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family)
    except OSError as err:
        raise GeexError(f"cannot listen on {host}:{port}: {err.strerror or err}") from None


def server_url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def run_server(
    app: FastAPI,
    sock: socket.socket,
    *,
    log_level: str = "info",
) -> None:
    """Serve ``app`` on ``sock`` until interrupted (Ctrl+C or SIGTERM)."""
    import uvicorn

    uvicorn.Server(uvicorn.Config(app, log_level=log_level)).run(sockets=[sock])


class BackgroundServer:
    """Serve an app from a thread of this process on a free loopback port::

        with BackgroundServer(create_app(served)) as server:
            urllib.request.urlopen(server.url + "/health")

    For tests and notebooks, where a second process would load the model again.
    """

    def __init__(self, app: FastAPI, host: str = "127.0.0.1", port: int = 0) -> None:
        import uvicorn

        self.socket = listening_socket(host, port)
        self.url = server_url(self.socket)
        self._server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self.socket]}, daemon=True
        )

    def __enter__(self) -> BackgroundServer:
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise GeexError(f"the server at {self.url} did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=30)
        self.socket.close()
