"""The VS Code extension's candidates and Ask panels in headless Chromium, and its translation,
as the editors' `geex serve` (run as the command) fills them: the extension, run by vitest
against the server with its `vscode` stand-in in a copy of editors/vscode, writes each panel's
page and the messages it sent; Chromium loads the page from the copy's media/ under its Content
Security Policy, receives the messages, and shows the server's candidates and streamed answer.
`geex.translate` opens a document holding the server's own translation. Needs Node.js with
`npm ci` in editors/vscode, the Debian package chromium and playwright (`scripts/setup.sh
--dev`). `pytest tests/editors/test_vscode_panels.py`; GEEX_DOCS_SCREENSHOTS=docs/images also
writes the screenshots and the translation's capture docs/editors.md shows."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from tests.chromium import launched_chromium, save_screenshot
from tests.conftest import required_module
from tests.editors.vscode_copy import copy_extension, npx_program, run

required_module("fastapi")

from tests.serve.editor_server import post  # noqa: E402

# What the panels' e2e picks and sets (test/panels.e2e.ts): C++ from the quick pick, and
# geex.tasks.maxTokens.
TRANSLATION_TARGET = "cpp"
TASK_MAX_TOKENS = 32
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
def browser():
    """Debian's headless Chromium (never a browser Playwright would download)."""
    with launched_chromium() as launched:
        yield launched


@pytest.fixture(scope="module")
def panels(tmp_path_factory, server, api_key) -> Path:
    """The folder the extension wrote the panels and the translation into, from `geex serve`."""
    npx = npx_program()
    extension = copy_extension(tmp_path_factory.mktemp("vscode"))
    out = tmp_path_factory.mktemp("panels")
    env = {"GEEX_E2E_URL": server, "GEEX_E2E_API_KEY": api_key, "GEEX_PANELS_OUT": str(out)}
    output = run([npx, "vitest", "run", "test/panels.e2e.ts"], extension, env)
    assert (out / "ask.json").exists(), "the extension wrote no panels:\n" + output
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
    # The sampled text may hold any character: HTML parsing turns a carriage return into a
    # line feed and drops NUL, so the page shows the text as the parser leaves it.
    expected = [re.sub(r"\r\n?", "\n", text).replace("\x00", "") for text in expected]
    assert page.locator(".candidate pre").all_text_contents() == expected
    # The stylesheet applied: buttons take the theme's colour, not the browser's grey.
    button = page.locator('.candidate button[data-action="insert"]').first
    assert button.evaluate("b => getComputedStyle(b).backgroundColor") == "rgb(0, 95, 184)"
    save_screenshot(page, tmp_path, "vscode-candidates.png")
    button.click()
    assert page.evaluate("window.posted") == [{"type": "insert", "index": 0}]
    assert button.is_disabled()
    # The document changed since: the extension refuses, and the button works again.
    page.evaluate("window.postMessage({type: 'refused', index: 0}, '*')")
    page.wait_for_function(
        "() => !document.querySelector('.candidate button[data-action=\"insert\"]').disabled"
    )
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


def test_translate_opens_the_servers_translation_in_a_new_document(panels, server, api_key):
    shown = json.loads((panels / "translate.json").read_text())
    body = {"code": shown["selection"], "language": "python", "target": TRANSLATION_TARGET,
            "max_tokens": TASK_MAX_TOKENS}  # fmt: skip
    status, answer, _ = post(
        f"{server}/v1/tasks/translate", body, {"Authorization": f"Bearer {api_key}"}
    )
    assert status == 200, answer
    expected = json.loads(answer)["text"]
    assert expected.strip(), "the tiny model translated nothing: the test proves nothing"
    assert shown["languageId"] == TRANSLATION_TARGET
    assert shown["text"] == expected
    docs = os.environ.get("GEEX_DOCS_SCREENSHOTS")
    if docs:
        Path(docs).mkdir(parents=True, exist_ok=True)
        (Path(docs) / "vscode-translate.txt").write_text(translation_capture(shown))


def translation_capture(shown: dict) -> str:
    """What the user saw, as text: the selection, the language picked, the document opened."""
    selection = shown["selection"].rstrip("\n")
    return (
        f"Selection in add.py ({shown['sourceLanguage']}):\n{selection}\n\n"
        f"Geex: Translate Selection -> {shown['target']}\n\n"
        f"New document beside it (language {shown['languageId']}):\n{shown['text'].rstrip()}\n"
    )
