"""One reader of request bodies for every protocol of ``geex serve``.

Each protocol answers a bad request in its own JSON shape (OpenAI's error object, Ollama's
``{"error": ...}``, llama.cpp's ``{"error": {code, message, type}}``), so the reader does not
answer: it raises :class:`RequestError`, and the protocol's route turns that into its answer.
What makes a body unreadable is the same for all of them, so it is decided here once: no body,
bytes that are not UTF-8 JSON, JSON nested past what the parser's recursion allows (a body
``[[[[...`` 100,000 deep raises ``RecursionError``, not ``ValueError``), a body that is not an
object, and text holding a lone surrogate escape (``"\\ud800"``), which no tokenizer can encode.

A body over :data:`OFF_LOOP_BYTES` is parsed and checked in a worker thread: a JSON body of
many small items (20,000 chat messages in 700 KB) takes ~40 ms to parse and walk, and on the
event loop that would stall every stream and ``/health`` for as long.
"""

from __future__ import annotations

import json

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from geex.errors import GeexError

OFF_LOOP_BYTES = 64 * 1024  # bodies larger than this are parsed in a worker thread


class RequestError(GeexError):
    """A request the server refuses: ``status`` 400 for bad input, 429 for a busy server."""

    def __init__(
        self,
        message: str,
        status: int = 400,
        retry_after: int | None = None,
        param: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message, self.status, self.retry_after = message, status, retry_after
        self.param = param  # the request field at fault, for protocols that name it

    def headers(self) -> dict[str, str] | None:
        return {"Retry-After": str(self.retry_after)} if self.retry_after is not None else None


def parse_json(raw: bytes, *, empty: dict | None = None, check_text: bool = True) -> dict:
    """``raw`` as a JSON object; ``empty`` is what an empty body means (None: it is an error).
    ``check_text=False`` leaves :func:`check_text` to a caller that must first tell which
    protocol the body is in (two share ``/v1/completions``)."""
    if not raw.strip():
        if empty is None:
            raise RequestError("the request body is empty: send a JSON object")
        return dict(empty)
    try:
        data = json.loads(raw)
    except RecursionError:
        raise RequestError("the request body is not valid JSON (nested too deeply)") from None
    except ValueError as err:  # bad JSON, and bytes that are not UTF-8 (UnicodeDecodeError)
        raise RequestError(f"the request body is not valid JSON ({err})") from None
    if not isinstance(data, dict):
        raise RequestError("the request body must be a JSON object")
    if check_text:
        check_text_of(data)
    return data


def check_text_of(data: object) -> None:
    """Refuse text holding a lone surrogate anywhere in ``data``."""
    where = lone_surrogate(data)
    if where is not None:
        raise RequestError(
            f"{where}: the text is not valid Unicode (a lone surrogate escape)",
            param=where.split(".")[0],
        )


async def read_json(
    request: Request, *, empty: dict | None = None, check_text: bool = True
) -> dict:
    """The body of ``request`` as a JSON object (see :func:`parse_json`), parsed in a worker
    thread when it is large."""
    raw = await request.body()
    if len(raw) > OFF_LOOP_BYTES:
        return await run_in_threadpool(parse_json, raw, empty=empty, check_text=check_text)
    return parse_json(raw, empty=empty, check_text=check_text)


def lone_surrogate(value: object) -> str | None:
    """The dotted path of the first string in ``value`` holding a lone surrogate, if any.

    Walked with a stack rather than by recursion: the parser lets a body nest nearly as deep
    as the interpreter's recursion limit, which a recursive walk on top of the server's own
    frames would then pass."""
    stack: list[tuple[str, object]] = [("", value)]
    while stack:
        where, item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return where or "body"
            continue
        if isinstance(item, dict):
            children = list(item.items())
        elif isinstance(item, list):
            children = list(enumerate(item))
        else:
            continue
        # Reversed, so that the first field is looked at first. A key is text too: one
        # holding a lone surrogate is named by its escape, so the error can be written out.
        for key, child in reversed(children):
            name = _escaped(str(key))
            path = f"{where}.{name}" if where else name
            stack.append((path, str(key) if name != str(key) else child))
    return None


def _escaped(key: str) -> str:
    """``key`` with a lone surrogate written as its escape (``\\ud800``), so that the error
    naming it can itself be written as JSON."""
    return key.encode("utf-8", "backslashreplace").decode("utf-8")
