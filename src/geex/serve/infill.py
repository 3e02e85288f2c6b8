"""What the editor protocols (Tabby, Ollama, llama.cpp) share on their way to the engine.

Each protocol answers errors in its own JSON shape, so bodies are read
(:mod:`geex.serve.request_body`) and validated here, not by FastAPI (whose validation errors
the application answers in one shape for all): a bad body becomes a :class:`RequestError`
that the protocol's route turns into its own answer.
Prompts are tokenized off the event loop, an infill through the model's FIM convention, and
cut to leave the request's ``max_tokens`` to generate (:func:`~geex.serve.limits.prompt_room`);
they are handed to the engine with a key of the editor's file (:func:`document_key`) as its
document, so that a newer keystroke in the same file cancels the request it makes stale.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import TypeVar

from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from geex.errors import GeexError
from geex.languages import Language, get_language
from geex.model.sampling import REPETITION_WINDOW
from geex.serve.engine import Completion, EngineBusy, GenerationParams, RequestHandle
from geex.serve.limits import (
    CountedStream,
    LimitExceeded,
    allowed_max_tokens,
    check_prompt_tokens,
    prompt_room,
)
from geex.serve.request_body import RequestError, check_text_of, read_json
from geex.serve.state import ServerState
from geex.serve.waiting import unless_disconnected

log = logging.getLogger("geex.serve")

RequestModel = TypeVar("RequestModel", bound=BaseModel)
# A repetition window no prompt and completion can outgrow: "the whole context".
WHOLE_CONTEXT = 2**31 - 1

# Editor language ids (VS Code's, which tabby-agent and most plugins send) that are not names
# or aliases in Geex's language table.
EDITOR_LANGUAGE_IDS = {
    "javascriptreact": "javascript",
    "typescriptreact": "typescript",
    "jsx": "javascript",
    "tsx": "typescript",
}


async def read_request(request: Request, model: type[RequestModel]) -> RequestModel:
    """The body of ``request`` as ``model``; a body that is not one is a :class:`RequestError`.
    An empty body is an empty object: every field takes its default."""
    return parse_request(await read_json(request, empty={}), model, check_text=False)


def parse_request(
    data: object, model: type[RequestModel], *, check_text: bool = True
) -> RequestModel:
    """``data`` (a parsed body) as ``model``, its text checked unless ``check_text`` is
    False (:func:`~geex.serve.request_body.read_json` checked it), or a :class:`RequestError`."""
    if not isinstance(data, dict):
        raise RequestError("the request body must be a JSON object")
    if check_text:
        check_text_of(data)
    try:
        return model.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise RequestError(f"{where}: {first['msg']}" if where else first["msg"]) from None


def editor_language(name: str | None) -> Language | None:
    """Geex's language for an editor's language id, or None for one Geex does not know (such a
    request is still served, with no language stop rules)."""
    if not name:
        return None
    key = name.strip().lower()
    try:
        return get_language(EDITOR_LANGUAGE_IDS.get(key, key))
    except GeexError:
        return None


async def infill_prompt_ids(
    state: ServerState, prefix: str, suffix: str, max_tokens: int
) -> list[int]:
    """The model's FIM prompt for the text around the cursor, cut to leave ``max_tokens``
    to generate (:func:`~geex.serve.limits.prompt_room`)."""
    if state.model.fim is None:
        raise RequestError(
            f"model {state.model.name} has no fill-in-the-middle tokens, so it cannot complete "
            "between a prefix and a suffix; serve it with geex serve --fim-style prefix-only "
            "to complete the prefix and drop the suffix"
        )
    room = prompt_room(state, max_tokens)
    try:
        return await run_in_threadpool(
            state.model.fim_prompt_ids, prefix, suffix, max_prompt_tokens=room
        )
    except GeexError as err:
        raise RequestError(str(err)) from None


async def plain_prompt_ids(state: ServerState, text: str, max_tokens: int) -> list[int]:
    """``text`` tokenized; a prompt over the room left by ``max_tokens`` keeps its end, nearest
    the cursor, and its leading ids (a Llama-family BOS), which the cut would otherwise drop."""
    ids = await run_in_threadpool(state.model.codec.encode, text)
    leading = getattr(state.model.tokens, "leading_ids", ())
    return cut_left(ids, prompt_room(state, max_tokens), leading)


async def chat_prompt_ids(state: ServerState, messages: list[dict]) -> list[int]:
    """``messages`` through the model's chat template; a conversation the template refuses, or
    one over the prompt budget (a chat is not cut), is a :class:`RequestError`."""
    try:
        ids = await run_in_threadpool(state.model.chat_prompt_ids, messages)
        check_prompt_tokens(state, len(ids), "messages")
    except LimitExceeded as err:
        raise RequestError(str(err), err.status) from None
    except GeexError as err:
        raise RequestError(str(err)) from None
    return ids


def cut_left(ids: list[int], room: int, leading: Sequence[int] = ()) -> list[int]:
    """``ids`` in at most ``room`` tokens: its start dropped, ``leading`` ids kept in front."""
    if len(ids) <= room:
        return ids
    head = list(leading) if leading and ids[: len(leading)] == list(leading) else []
    keep = max(room - len(head), 0)
    return head + ids[len(ids) - keep :] if keep else head


def document_key(
    request: Request,
    protocol: str,
    filepath: str | None,
    *,
    git_url: str | None = None,
    user: str | None = None,
) -> str | None:
    """The engine's ``document`` for a request about ``filepath``: a newer request with the
    same key cancels the older, which a keystroke has made stale.

    The key names the protocol (an editor's keystroke must not cancel an explain task on the
    same file), the client (a hash of its credentials, and the ``user`` it names: two people's
    ``src/main.py`` are different files) and the repository (``git_url``: two repos'
    ``src/main.py`` too). A request naming no file has no document: a repository alone would
    make every file of it cancel the others."""
    if not filepath:
        return None
    credentials = request.headers.get("authorization", "")
    client = hashlib.sha256(credentials.encode()).hexdigest()[:16] if credentials else ""
    return json.dumps([protocol, client, user or "", git_url or "", filepath])


def generation_params(
    state: ServerState,
    *,
    max_tokens: int | None,
    temperature: float,
    top_p: float = 1.0,
    top_k: int = 0,
    seed: int | None = None,
    stop: Sequence[str] = (),
    server_stop: Sequence[str] = (),
    language: Language | None = None,
    repetition_penalty: float | None = None,
    repetition_window: int = REPETITION_WINDOW,
    penalty_fallback: float = 1.0,
) -> GenerationParams:
    """Sampling settings checked, ``max_tokens`` (none or -1: as many as allowed) capped by
    the server's limit (:func:`~geex.serve.limits.allowed_max_tokens` says why). A request
    without a ``repetition_penalty`` decodes with the model's own, else ``penalty_fallback``
    (the protocol's default)."""
    try:
        return GenerationParams(
            max_tokens=allowed_max_tokens(state.limits, max_tokens, cap=True),
            temperature=temperature,
            top_p=top_p,
            top_k=top_k,
            seed=seed,
            repetition_penalty=state.model.penalty(repetition_penalty, penalty_fallback),
            repetition_window=repetition_window,
            stop=tuple(s for s in stop if s),
            server_stop=tuple(server_stop),
            language=language,
            stop_token_ids=state.model.stop_token_ids,
        )
    except GeexError as err:
        raise RequestError(str(err)) from None


def repeat_options(penalty: float | None, last_n: int) -> dict:
    """``generation_params``' repetition fields from llama.cpp's and Ollama's
    ``repeat_penalty`` (None: the model's or the protocol's) and ``repeat_last_n`` (0: no
    penalty; -1: the whole context)."""
    if last_n < -1:
        raise RequestError(
            f"repeat_last_n must be -1 (the whole context), 0 (off) or more, got {last_n}"
        )
    if last_n == 0:
        return {"repetition_penalty": 1.0}
    window = WHOLE_CONTEXT if last_n == -1 else last_n
    return {"repetition_penalty": penalty, "repetition_window": window}


def submit(
    state: ServerState,
    prompt_ids: Sequence[int],
    params: GenerationParams,
    document: str | None = None,
) -> RequestHandle:
    """One sequence queued on the engine; a full queue is a 429, a prompt too long a 400."""
    try:
        [handle] = state.engine.submit(prompt_ids, params, document=document)
    except EngineBusy as err:
        raise RequestError(str(err), status=429, retry_after=err.retry_after) from None
    except GeexError as err:
        raise RequestError(str(err)) from None
    return handle


async def pieces(handle: RequestHandle) -> AsyncIterator[str]:
    """The handle's text as decoded; a client that leaves (the generator closed) cancels it."""
    try:
        async for piece in handle.stream():
            yield piece
    finally:
        if not handle.done:
            handle.cancel()


@contextlib.contextmanager
def stream_slot(state: ServerState, stream: bool) -> Iterator[None]:
    """A slot of ``--max-streams`` for a streaming request, held from before it is submitted;
    the server at its limit is a 429 :class:`RequestError`."""
    try:
        with state.streams.held(stream):
            yield
    except LimitExceeded as err:
        raise RequestError(str(err), err.status, retry_after=err.retry_after) from None


def counted_stream(
    state: ServerState, body: AsyncIterator[str], handle: RequestHandle, media_type: str
) -> CountedStream:
    """The streamed answer, giving back its slot (and cancelling the handle) when it ends."""

    def cancel() -> None:
        if not handle.done:
            handle.cancel()

    return CountedStream(body, state.streams, media_type=media_type, on_close=cancel)


def plain_error_response(err: RequestError) -> JSONResponse:
    """An error as Tabby and Ollama answer it: ``{"error": message}``."""
    return JSONResponse({"error": err.message}, status_code=err.status, headers=err.headers())


@dataclasses.dataclass
class AnswerShape:
    """How a protocol writes a generation: each streamed piece, the last piece (with the
    counts), a failure after the stream has begun, the whole answer, and an error."""

    media_type: str
    piece: Callable[[str], str]
    final: Callable[[Completion], str]
    failed: Callable[[Exception], str]
    whole: Callable[[Completion], dict]
    error: Callable[[RequestError], Response]


async def answer(
    state: ServerState, request: Request, handle: RequestHandle, stream: bool, shape: AnswerShape
) -> Response:
    """The generation streamed (its slot given back, and the handle cancelled, when the stream
    ends however it ends) or whole (cancelled if the client leaves first), in ``shape``."""
    if stream:

        async def body() -> AsyncIterator[str]:
            try:
                async for piece in pieces(handle):
                    yield shape.piece(piece)
                completion = await handle.result()
            except Exception as err:  # the status line has gone out: the error ends the body
                if not isinstance(err, GeexError):
                    log.exception("streamed generation failed")
                yield shape.failed(err)
                return
            yield shape.final(completion)

        return counted_stream(state, body(), handle, shape.media_type)
    try:
        completion = await unless_disconnected(request, handle.result(), handle.cancel)
    except RequestError as err:
        return shape.error(err)
    except GeexError as err:
        return shape.error(RequestError(str(err), 500))
    return JSONResponse(shape.whole(completion))
