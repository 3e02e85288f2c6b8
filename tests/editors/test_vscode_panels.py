"""The VS Code extension's candidates and Ask panels in headless Chromium, as `geex serve` (run
as the command) fills them: the extension, run by vitest against the server with its `vscode`
stand-in, writes each panel's page and the messages it sent; Chromium loads the page from
editors/vscode/media under its Content Security Policy, receives the messages, and shows the
server's candidates and streamed answer. Needs node with `npm ci` in editors/vscode, the Debian
package chromium and playwright (`scripts/setup.sh --dev`).
`pytest tests/editors/test_vscode_panels.py`; GEEX_DOCS_SCREENSHOTS=docs/images also writes
the screenshots docs/editors.md shows."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.conftest import missing, required_module, required_program

required_module("fastapi")

from tests.serve import test_playground_browser as playground  # noqa: E402
from tests.serve.editor_server import save_tiny_model  # noqa: E402
from tests.serve.serve_process import geex_serve  # noqa: E402

browser = playground.browser  # Debian's headless Chromium, once for the module
save_screenshot = playground.save_screenshot

EXTENSION = Path(__file__).resolve().parents[2] / "editors" / "vscode"
VITEST = EXTENSION / "node_modules" / "vitest" / "vitest.mjs"
RENDER_TIMEOUT_S = 600  # a guard against a hang on a busy machine, not a speed check
# What VS Code sets on a webview's <html> for its Light Modern theme (the variables the
# panels' stylesheet reads); without them the page would show the browser's defaults.
LIGHT_THEME = {
    "--vscode-font-family": "system-ui, sans-serif",
    "--vscode-font-size": "13px",
    "--vscode-editor-font-family": "'DejaVu Sans Mono', monospace",
    "--vscode-editor-font-size": "13px",
    "--vscode-foreground": "#3b3b3b",
    "--vscode-descriptionForeground": "#717171",
    "--vscode-editor-background": "#ffffff",
    "--vscode-textCodeBlock-background": "#f2f2f2",
    "--vscode-panel-border": "#e5e5e5",
    "--vscode-button-background": "#005fb8",
    "--vscode-button-foreground": "#ffffff",
    "--vscode-button-hoverBackground": "#0258a8",
    "--vscode-button-secondaryBackground": "#e5e5e5",
    "--vscode-button-secondaryForeground": "#3b3b3b",
    "--vscode-input-background": "#ffffff",
    "--vscode-input-foreground": "#3b3b3b",
    "--vscode-input-border": "#cecece",
    "--vscode-errorForeground": "#f85149",
}
# The webview API a panel's script calls, recording what it posts to the extension.
VSCODE_API = """
window.posted = [];
window.acquireVsCodeApi = () => ({
  postMessage: (message) => window.posted.push(message),
  getState: () => undefined,
  setState: () => undefined,
});
"""


@pytest.fixture(scope="module")
def panels(tmp_path_factory) -> Path:
    """The folder the extension wrote the panels into, from a tiny model's `geex serve`."""
    node = required_program("node", package="nodejs")
    if not VITEST.exists():
        missing(f"needs the extension's dependencies: run npm ci in {EXTENSION}")
    folder = save_tiny_model(tmp_path_factory.mktemp("vscode") / "tiny-geex")
    out = tmp_path_factory.mktemp("panels")
    with geex_serve(folder, "--model-name", "tiny-geex") as url:
        env = {**os.environ, "GEEX_E2E_URL": url, "GEEX_PANELS_OUT": str(out)}
        run = subprocess.run(
            [node, str(VITEST), "run", "test/panels.e2e.ts"],
            cwd=EXTENSION, env=env, capture_output=True, text=True, timeout=RENDER_TIMEOUT_S,
        )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    assert (out / "ask.json").exists(), "the extension wrote no panels:\n" + run.stdout
    return out


def open_panel(browser, panels: Path, name: str):
    """The panel's page in Chromium with VS Code's theme, the extension's messages delivered;
    the page, its saved data and the script errors or policy violations it reported."""
    data = json.loads((panels / f"{name}.json").read_text())
    problems: list[str] = []
    page = browser.new_page(viewport={"width": 560, "height": 640}, color_scheme="light")
    page.on("pageerror", lambda err: problems.append(f"script error: {err}"))
    page.on("console", lambda m: m.type == "error" and problems.append(m.text))
    page.add_init_script(VSCODE_API)
    page.goto((panels / f"{name}.html").as_uri())
    page.evaluate(
        "theme => Object.entries(theme).forEach(([k, v]) =>"
        " document.documentElement.style.setProperty(k, v))",
        LIGHT_THEME,
    )
    for message in data["messages"]:
        page.evaluate("message => window.postMessage(message, '*')", message)
    return page, data, problems


def without_space(text: str) -> str:
    return re.sub(r"\s+", "", text)


def test_the_candidates_panel_shows_the_servers_candidates(browser, panels, tmp_path):
    page, data, problems = open_panel(browser, panels, "candidates")
    expected = list(dict.fromkeys(t.rstrip() for t in data["answers"] if t.strip()))
    assert expected, "the tiny model gave no candidates: the test proves nothing"
    assert page.locator(".candidate pre").all_text_contents() == expected
    # The stylesheet applied: buttons take the theme's colour, not the browser's grey.
    button = page.locator('.candidate button[data-action="insert"]').first
    assert button.evaluate("b => getComputedStyle(b).backgroundColor") == "rgb(0, 95, 184)"
    save_screenshot(page, tmp_path, "vscode-candidates.png")
    button.click()
    assert page.evaluate("window.posted") == [{"type": "insert", "index": 0}]
    assert problems == []


def test_the_ask_panel_shows_the_streamed_answer_and_the_context(browser, panels, tmp_path):
    page, data, problems = open_panel(browser, panels, "ask")
    answer = "".join(data["answers"])
    assert answer.strip(), "the tiny model answered nothing: the test proves nothing"
    turns = [m for m in data["messages"] if m["type"] == "turn"]
    assert len(turns) >= 3, "the answer came in one piece"
    assert page.locator(".turn").count() == 1
    shown = page.locator(".turn .answer p:not(.note)").all_text_contents()
    assert without_space("".join(shown)) == without_space(answer)
    assert page.locator(".turn .question > p").text_content() == "What does add return?"
    assert "def add(a, b):" in page.locator("#context pre").text_content()
    assert page.locator("#stop").is_hidden() and page.locator("#send").is_enabled()
    save_screenshot(page, tmp_path, "vscode-ask.png")
    page.fill("#question", "And with strings?")
    page.press("#question", "Enter")
    assert page.evaluate("window.posted") == [
        {"type": "ready"},
        {"type": "ask", "question": "And with strings?"},
    ]
    assert problems == []
