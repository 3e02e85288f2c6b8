"""Who may ask, and how much they may send: API key, body size, CORS, as ASGI middleware.

Pure ASGI rather than Starlette's ``BaseHTTPMiddleware``, which buffers streamed responses and
would hold back every server-sent event until the end. The order, outermost first, is
CORS (a browser's preflight needs no key) -> API key (a stranger's upload is refused before a
byte of it is read) -> body size (counted while it arrives, whether or not Content-Length was
sent, so a chunked upload cannot grow past the bound either).

Refusals are JSON in OpenAI's error shape, the shape every editor client already parses.
"""

from __future__ import annotations

import hmac
import json
from typing import TYPE_CHECKING

from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from geex.serve.openai_api import error_body
from geex.serve.playground import ASSET_PATHS

if TYPE_CHECKING:
    from fastapi import FastAPI

    from geex.serve.state import ServeLimits

# Liveness checks need no key, nor the playground's page and files, which hold no data.
OPEN_PATHS = frozenset({"/", "/health", *ASSET_PATHS})


async def send_error(send: Send, status: int, body: dict, headers: dict | None = None) -> None:
    payload = json.dumps(body).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": payload})


class ApiKeyMiddleware:
    """``Authorization: Bearer KEY`` on every path but the open ones; else a 401."""

    def __init__(self, app: ASGIApp, api_key: str) -> None:
        self.app = app
        self._key = api_key.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan" or scope.get("path") in OPEN_PATHS:
            return await self.app(scope, receive, send)
        given = dict(scope["headers"]).get(b"authorization", b"")
        scheme, _, token = given.partition(b" ")
        # The scheme's case does not matter (RFC 9110); the key is compared in constant time.
        if scheme.lower() == b"bearer" and hmac.compare_digest(token.strip(), self._key):
            return await self.app(scope, receive, send)
        if scope["type"] == "websocket":  # none is served; refuse before any route sees it
            return await send({"type": "websocket.close", "code": 1008})
        message = (
            "no API key given: send the header 'Authorization: Bearer KEY'"
            if not given
            else "the API key is not valid for this server"
        )
        body = error_body(message, code="invalid_api_key")
        await send_error(send, 401, body, {"WWW-Authenticate": "Bearer"})


class _BodyTooLarge(Exception):
    pass


class BodySizeMiddleware:
    """A request body over ``max_bytes`` is a 413, whether announced or found while reading."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            return await self._refuse(send)
        received = 0
        over = False
        started = False

        async def counted_receive() -> Message:
            nonlocal received, over
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    over = True
                    raise _BodyTooLarge
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if over:  # the app's answer to a cut body (a parse error) is replaced by the 413
                return
            started = True
            await send(message)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except _BodyTooLarge:
            pass
        except Exception:
            if not over:
                raise
        if over and not started:
            await self._refuse(send)

    async def _refuse(self, send: Send) -> None:
        mib = self.max_bytes / (1024 * 1024)
        message = (
            f"the request body is over this server's limit of {self.max_bytes} bytes "
            f"({mib:g} MiB; geex serve --max-body-mb)"
        )
        # No "Connection: close": a client still sending could then meet a reset instead of
        # this answer. uvicorn discards the rest of the body unparsed, and drops the connection
        # at its keep-alive timeout.
        await send_error(send, 413, error_body(message, code="request_too_large"))


def add_security(app: FastAPI, limits: ServeLimits) -> None:
    """Put the body bound, the key check (if a key is set) and CORS (if origins are) around
    ``app``; Starlette runs the middleware added last first."""
    app.add_middleware(BodySizeMiddleware, max_bytes=limits.max_body_bytes)
    if limits.api_key:
        app.add_middleware(ApiKeyMiddleware, api_key=limits.api_key)
    if limits.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(limits.cors_origins),
            allow_methods=["GET", "POST", "OPTIONS"],
            allow_headers=["*"],
            max_age=600,
        )
