"""Waiting for a non-streamed answer while watching the client that asked for it.

A streamed answer learns that its client has gone when a write fails (Starlette then cancels
the stream, which cancels the generation). A non-streamed one writes nothing until the end,
so without a watch a client that hangs up (an editor's keystroke aborts its last request)
would leave its sequence decoding to the token cap, holding a batch slot for nobody. Every
protocol's non-streamed route waits through :func:`unless_disconnected`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from starlette.requests import Request

from geex.serve.request_body import RequestError

T = TypeVar("T")

DISCONNECT_POLL_SECONDS = 0.5  # how soon a non-streamed request notices its client has gone
CLIENT_GONE = 499  # nginx's "client closed request": no one reads it, but the log shows it


async def unless_disconnected(
    request: Request, work: Awaitable[T], cancel: Callable[[], None]
) -> T:
    """``work``'s result; if the client disconnects first, ``cancel()`` (which cancels the
    generation) and a :class:`RequestError` with status 499."""
    task = asyncio.ensure_future(work)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=DISCONNECT_POLL_SECONDS)
            if done:
                return task.result()
            if await request.is_disconnected():
                raise RequestError("the client disconnected", status=CLIENT_GONE)
    finally:
        if not task.done():
            cancel()
            task.cancel()
