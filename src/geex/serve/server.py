"""``geex serve``: the FastAPI application over one model and its engine, run by uvicorn.

    GET  /                  what is served and where (open without a key); a browser
                            gets the playground page instead (:mod:`geex.serve.playground`)
    GET  /health            {"status": "ok", "model": NAME, "engine": {running, queued, ...}}
    ...                     each protocol's routes, from PROTOCOL_ROUTERS

Every protocol is a module with ``router(state) -> APIRouter``: a thin adapter that tokenizes
off the event loop and hands prompt ids to the engine, which decodes on its own thread. So the
event loop only moves text, and ``/health`` answers at once under any load. The API key, the
body-size bound and CORS wrap the whole application (:mod:`geex.serve.security`).
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from geex import __version__
from geex.errors import GeexError
from geex.serve import (
    llamacpp_api,
    ollama_api,
    openai_routes,
    playground,
    tabby_api,
    tasks_api,
)
from geex.serve.engine import EngineBusy
from geex.serve.limits import LimitExceeded
from geex.serve.openai_api import ApiError, busy_error, error_body
from geex.serve.security import add_security
from geex.serve.state import ServerState

log = logging.getLogger("geex.serve")

# One line per protocol: a function of the server state returning its routes.
PROTOCOL_ROUTERS: list[Callable[[ServerState], APIRouter]] = [
    openai_routes.router,  # also hands Tabby's bodies at /v1/completions to tabby_api
    tabby_api.router,
    ollama_api.router,
    llamacpp_api.router,
    tasks_api.router,
]


def create_app(state: ServerState) -> FastAPI:
    """The FastAPI application serving ``state.model`` through ``state.engine``."""
    app = FastAPI(title="Geex", version=__version__, description="A code model's server")
    _add_error_handlers(app)

    @app.get("/")
    async def index(request: Request):
        if playground.wants_page(request):
            return playground.page()
        body = {"name": "geex", "model": state.model.name, "endpoints": endpoints(app)}
        return JSONResponse(body, headers={"Vary": "Accept"})

    @app.get("/health")
    async def health() -> dict:
        stats = {**state.engine.stats(), "streams": state.streams.open}
        return {"status": "ok", "model": state.model.name, "engine": stats}

    for make_router in PROTOCOL_ROUTERS:
        app.include_router(make_router(state))
    app.include_router(playground.router())  # the page's files; the page is GET / itself
    add_security(app, state.limits)
    return app


def endpoints(app: FastAPI) -> list[str]:
    """``"METHOD /path"`` of every route, for the start line and ``GET /``."""
    # The OpenAPI schema, as routers included into routers are not flat in app.routes.
    paths = app.openapi()["paths"]
    return [f"{method.upper()} {path}" for path, methods in paths.items() for method in methods]


def _add_error_handlers(app: FastAPI) -> None:
    """Every error as JSON in OpenAI's shape, the one editor clients parse."""

    @app.exception_handler(ApiError)
    async def api_error(_request, err: ApiError) -> JSONResponse:
        return JSONResponse(err.body(), status_code=err.status, headers=err.headers)

    # A protocol that lets these through still answers a 4xx, not a 500.
    @app.exception_handler(LimitExceeded)
    async def over_limit(_request, err: LimitExceeded) -> JSONResponse:
        if err.status == 429:
            answer = busy_error(str(err), err.retry_after)
            return JSONResponse(answer.body(), status_code=429, headers=answer.headers)
        headers = {"Retry-After": str(err.retry_after)} if err.retry_after else None
        body = error_body(str(err), param=err.param, code=err.code)
        return JSONResponse(body, status_code=err.status, headers=headers)

    @app.exception_handler(EngineBusy)
    async def busy(_request, err: EngineBusy) -> JSONResponse:
        answer = busy_error(str(err), err.retry_after)
        return JSONResponse(answer.body(), status_code=429, headers=answer.headers)

    @app.exception_handler(RequestValidationError)
    async def bad_request(_request, err: RequestValidationError) -> JSONResponse:
        first = err.errors()[0] if err.errors() else {"loc": (), "msg": "invalid request"}
        if first.get("type") == "missing" and tuple(first.get("loc", ())) == ("body",):
            message = "the request body is empty: send a JSON object"
            return JSONResponse(error_body(message), status_code=400)
        if first.get("type") == "json_invalid":
            message = f"the request body is not valid JSON ({first.get('msg')})"
            return JSONResponse(error_body(message), status_code=400)
        # loc is ("body", field, <union member>, <index>...): the field is what a client sets.
        location = [part for part in first.get("loc", ()) if part != "body"]
        field_name = str(location[0]) if location else None
        message = f"{field_name or 'the request body'}: {first.get('msg')}"
        return JSONResponse(error_body(message, param=field_name), status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request, err: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(
            error_body(str(err.detail)), status_code=err.status_code, headers=err.headers
        )

    @app.exception_handler(Exception)
    async def server_error(_request, err: Exception) -> JSONResponse:
        # Starlette re-raises the exception after this answer, so uvicorn logs its traceback.
        body = error_body(f"internal error: {type(err).__name__}: {err}", kind="server_error")
        return JSONResponse(body, status_code=500)


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

        with BackgroundServer(create_app(state)) as server:
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
