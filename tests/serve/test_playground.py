"""The web playground as HTTP sees it: browsers get the page at `/` under a self-only CSP, other
clients the JSON index; every file the page loads is local, open without the key, and shipped
in the wheel. `pytest tests/serve/test_playground.py`."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
import zipfile
from html.parser import HTMLParser
from importlib import resources
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import pytest

from tests.conftest import required_module

required_module("fastapi")
required_module("uvicorn")

from geex.languages import HUMANEVALX, LANGUAGES, get_language  # noqa: E402
from geex.serve.state import ServeLimits  # noqa: E402
from tests.serve.tiny_server import call, save_tiny_checkpoint, serving  # noqa: E402

KEY = "playground-key"
ROOT = Path(__file__).resolve().parents[2]
BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
MEDIA_TYPES = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml",
               ".json": "application/json"}  # fmt: skip


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    checkpoint = save_tiny_checkpoint(tmp_path_factory.mktemp("playground") / "tiny-geex")
    with serving(checkpoint, ServeLimits(api_key=KEY)) as (running, _state):
        yield running


def fetch(url: str, headers: dict | None = None) -> tuple[int, bytes, dict]:
    """(status, body, headers) of a GET that sends no key unless ``headers`` holds one."""
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read(), response.headers
    except urllib.error.HTTPError as err:
        return err.code, err.read(), err.headers


class _Links(HTMLParser):
    """Every address the page makes the browser fetch: src and href attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.addresses: list[str] = []

    def handle_starttag(self, tag, attrs) -> None:
        self.addresses += [value for name, value in attrs if name in {"src", "href"} and value]


def page_addresses(page: str) -> list[str]:
    parser = _Links()
    parser.feed(page)
    return parser.addresses


def module_imports(script: str) -> list[str]:
    """The specifiers of a module's static and dynamic imports."""
    return re.findall(r"""(?:\bfrom|\bimport)\s*\(?\s*["']([^"']+)["']""", script)


def test_a_browser_gets_the_page_under_a_self_only_policy(server):
    status, body, headers = fetch(server.url + "/", {"Accept": BROWSER_ACCEPT})
    assert status == 200 and headers["Content-Type"] == "text/html; charset=utf-8"
    assert b"<title>Geex playground</title>" in body
    policy = dict(
        part.strip().split(" ", 1) for part in headers["Content-Security-Policy"].split(";")
    )
    assert policy["default-src"] == "'none'"
    for directive in ("script-src", "style-src", "img-src", "connect-src"):
        assert policy[directive] == "'self'", directive
    assert policy["frame-ancestors"] == "'none'" and policy["base-uri"] == "'none'"
    assert headers["X-Content-Type-Options"] == "nosniff" and headers["Vary"] == "Accept"


@pytest.mark.parametrize("accept", [None, "*/*", "application/json"])
def test_other_clients_keep_the_json_index(server, accept):
    status, index, headers = call(server, "/", headers={"Accept": accept} if accept else None)
    assert status == 200 and headers["Content-Type"] == "application/json"
    assert index["name"] == "geex" and index["model"] == "tiny-geex"
    assert "GET /" in index["endpoints"] and "POST /v1/tasks/{task}" in index["endpoints"]
    # The page's files are not API routes: the index (and the start line) do not list them.
    assert not [route for route in index["endpoints"] if "playground" in route]


def test_every_file_the_page_loads_is_local_open_and_typed(server):
    _, page, _ = fetch(server.url + "/", {"Accept": BROWSER_ACCEPT})
    pending = [urljoin(server.url + "/", address) for address in page_addresses(page.decode())]
    assert {urlsplit(url).path for url in pending} >= {
        "/playground/app.js",
        "/playground/style.css",
    }
    seen: set[str] = set()
    while pending:
        url = pending.pop()
        if url in seen:
            continue
        seen.add(url)
        parts = urlsplit(url)
        assert (parts.scheme, parts.netloc) == ("http", urlsplit(server.url).netloc), url
        status, body, headers = fetch(url)  # no key
        assert status == 200, f"{parts.path}: {status} {body[:200]!r}"
        assert headers["Content-Type"].startswith(MEDIA_TYPES[Path(parts.path).suffix]), parts.path
        assert headers["X-Content-Type-Options"] == "nosniff"
        text = body.decode()
        if parts.path.endswith(".js"):
            pending += [urljoin(url, specifier) for specifier in module_imports(text)]
        if parts.path.endswith(".css"):
            assert "url(" not in text and "@import" not in text, "the stylesheet fetches more"
    assert {urlsplit(url).path for url in seen} >= {"/playground/api.js", "/playground/icon.svg"}


def test_the_files_are_open_but_the_api_and_other_paths_need_the_key(server):
    assert fetch(server.url + "/playground/languages.json")[0] == 200
    status, body, _ = fetch(server.url + "/playground/secrets.txt")
    assert status == 401 and b"no API key" in body  # only the page's own files are open
    status, body, _ = fetch(
        server.url + "/playground/secrets.txt", {"Authorization": f"Bearer {KEY}"}
    )
    assert status == 404 and b"the playground has no file 'secrets.txt'" in body
    status, answer, _ = call(server, "/v1/tasks/infill", {"prefix": "x = ", "suffix": "\n"})
    assert status == 401 and answer["error"]["code"] == "invalid_api_key"


def test_the_language_choices_are_the_registrys(server):
    _, languages, _ = call(server, "/playground/languages.json")
    keys = [entry["key"] for entry in languages]
    assert sorted(keys) == sorted(language.key for language in LANGUAGES.values())
    assert keys[: len(HUMANEVALX)] == [language.key for language in HUMANEVALX.values()]
    assert all(get_language(entry["key"]).name == entry["name"] for entry in languages)


def _playground_files() -> list[str]:
    folder = resources.files("geex.serve.playground")
    return sorted(entry.name for entry in folder.iterdir() if entry.name.endswith(
        (".html", ".js", ".css", ".svg")))  # fmt: skip


def test_a_built_wheel_holds_the_page(tmp_path):
    required_module("setuptools")
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "src", source / "src",
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))  # fmt: skip
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "--quiet", "--wheel-dir", str(tmp_path / "dist"), str(source)],
                   check=True, capture_output=True, timeout=300)  # fmt: skip
    [wheel] = (tmp_path / "dist").glob("geex-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    files = _playground_files()
    assert {"index.html", "app.js", "api.js", "style.css", "icon.svg"} <= set(files)
    unshipped = [f for f in files if f"geex/serve/playground/{f}" not in names]
    assert unshipped == [], f"{wheel.name} lacks them: see package-data in pyproject.toml"
