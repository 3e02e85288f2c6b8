"""The web playground: a page at ``GET /`` for browsers, and the files it loads, all served
by ``geex serve`` itself.

The page (``index.html`` beside this file, its ES modules and stylesheet) calls the tasks API
(:mod:`geex.serve.tasks_api`) from the browser, streaming. Nothing comes from elsewhere: no
CDN, no web fonts, so the playground works on a machine with no internet, and the page's
Content-Security-Policy allows this server alone. Browsers ask for HTML; every other client
(curl, editors, ``urllib``) keeps getting the JSON index at ``/``.

The files hold no data, so they are open without the API key, like ``/`` itself; the page
asks for the key when the server answers 401 and sends it as ``Authorization: Bearer``.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources

from fastapi import APIRouter, HTTPException, Request, Response

from geex.languages import HUMANEVALX, LANGUAGES

ASSETS_PREFIX = "/playground/"

# What may be fetched under ASSETS_PREFIX, with its type; anything else is a 404.
_MEDIA_TYPES = {
    "app.js": "text/javascript; charset=utf-8",
    "api.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
    "icon.svg": "image/svg+xml",
    "languages.json": "application/json",
}
ASSET_PATHS = frozenset(ASSETS_PREFIX + name for name in _MEDIA_TYPES)

# Self only: a script injected through a task's answer (the page never parses it as HTML
# anyway) could neither run nor send the key elsewhere.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_COMMON_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",  # a new version of geex serves new files at the same paths
}


def wants_page(request: Request) -> bool:
    """Whether ``/`` was asked for by a browser: it names HTML in Accept, curl's ``*/*`` not."""
    return "text/html" in request.headers.get("accept", "")


def page() -> Response:
    headers = {**_COMMON_HEADERS, "Content-Security-Policy": CONTENT_SECURITY_POLICY}
    headers["Vary"] = "Accept"  # the same URL answers JSON to other clients
    return Response(_read("index.html"), media_type="text/html; charset=utf-8", headers=headers)


@cache
def _read(name: str) -> bytes:
    return (resources.files(__name__) / name).read_bytes()


@cache
def _languages_json() -> bytes:
    """The page's language choices from the one registry: HumanEval-X's first, then by name."""
    first = list(HUMANEVALX.values())
    rest = sorted((lang for lang in LANGUAGES.values() if lang not in first), key=_by_name)
    listed = [{"key": lang.key, "name": lang.name} for lang in [*first, *rest]]
    return json.dumps(listed).encode()


def _by_name(language) -> str:
    return language.name.lower()


def router() -> APIRouter:
    """The playground's files; ``GET /`` itself is the server's index, which calls ``page``."""
    routes = APIRouter()

    @routes.get(ASSETS_PREFIX + "{name}", include_in_schema=False)
    async def asset(name: str) -> Response:
        media_type = _MEDIA_TYPES.get(name)
        if media_type is None:
            raise HTTPException(404, f"the playground has no file {name!r}")
        body = _languages_json() if name == "languages.json" else _read(name)
        return Response(body, media_type=media_type, headers=_COMMON_HEADERS)

    return routes
