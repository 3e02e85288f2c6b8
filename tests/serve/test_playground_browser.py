"""The web playground in headless Chromium against `geex serve` run as the command, with an API
key: the page asks for the key, then streams a fill-in-the-middle completion and a translation
that equal the server's own answers, shows the server's errors in place, and stops on Stop.
Needs the Debian package chromium and the Python package playwright (`scripts/setup.sh --dev`).
`pytest tests/serve/test_playground_browser.py`; GEEX_DOCS_SCREENSHOTS=docs/images also
writes the screenshots docs/editors.md shows."""

from __future__ import annotations

import pytest

from tests.chromium import launched_chromium, save_screenshot
from tests.conftest import required_module

required_module("fastapi")

from tests.serve.editor_server import save_tiny_model, served  # noqa: E402
from tests.serve.serve_process import geex_serve  # noqa: E402

KEY = "playground-browser-key"
WAIT_MS = 60_000  # a guard against a hang on a busy machine, not a speed check
FIM = {"prefix": "def add(a, b):\n    return ", "suffix": "\n\n\nprint(add(1, 2))\n",
       "language": "python", "max_tokens": 16, "temperature": 0}  # fmt: skip
TRANSLATION = {"code": "def add(a, b):\n    return a + b\n", "language": "python",
               "target": "cpp", "max_tokens": 24, "temperature": 0}  # fmt: skip


@pytest.fixture(scope="module")
def browser():
    """Debian's headless Chromium (never a browser Playwright would download)."""
    with launched_chromium() as launched:
        yield launched


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = save_tiny_model(tmp_path_factory.mktemp("playground") / "tiny-geex")
    with geex_serve(folder, "--api-key", KEY, "--model-name", "tiny-geex") as url:
        yield url


def served_answer(url: str, task: str, body: dict) -> str:
    """The task's text as the API answers it, not streamed."""
    text = served(url, f"/v1/tasks/{task}", body, KEY)["text"]
    assert text.strip(), f"the tiny model answered nothing to {task}: the test proves nothing"
    return text


def fill_form(panel, fields: dict) -> None:
    for name, value in fields.items():
        field = panel.locator(f'[name="{name}"]')
        if field.evaluate("element => element.tagName") == "SELECT":
            field.select_option(value)
        else:
            field.fill(str(value))


def run_task(panel) -> None:
    """Submit the panel's form and wait until its answer is no longer streaming."""
    from playwright.sync_api import expect

    panel.locator('button[type="submit"]').click()
    expect(panel.locator(".answer")).not_to_have_attribute(
        "data-state", "streaming", timeout=WAIT_MS
    )
    expect(panel.locator(".answer")).not_to_have_attribute("data-state", "idle", timeout=WAIT_MS)


def test_the_page_streams_the_servers_answers(browser, server, tmp_path):
    from playwright.sync_api import expect

    fim_text = served_answer(server, "infill", FIM)
    translation = served_answer(server, "translate", TRANSLATION)
    problems: list[str] = []
    page = browser.new_page(viewport={"width": 1100, "height": 700}, color_scheme="light")
    page.on("pageerror", lambda err: problems.append(f"script error: {err}"))
    page.on("console", lambda m: "Content Security Policy" in m.text and problems.append(m.text))
    page.goto(server + "/")

    # The key is asked for because the server answered 401, and kept once it opens it.
    expect(page.locator("#key-message")).to_contain_text("no API key", timeout=WAIT_MS)
    page.fill("#api-key", KEY)
    page.click('#key-form button[type="submit"]')
    expect(page.locator("#key-panel")).to_be_hidden(timeout=WAIT_MS)
    expect(page.locator("#model")).to_have_text("tiny-geex", timeout=WAIT_MS)
    assert page.evaluate("localStorage.getItem('geex.apiKey')") == KEY

    complete = page.locator("#complete")
    fill_form(complete, FIM)
    run_task(complete)
    answer = complete.locator(".answer")
    assert answer.get_attribute("data-state") == "done", answer.inner_text()
    assert complete.locator("mark").text_content() == fim_text
    assert int(answer.get_attribute("data-pieces")) > 1, "the answer came in one piece"
    shown = complete.locator(".context").all_text_contents()
    assert shown == [FIM["prefix"], FIM["suffix"]]
    save_screenshot(page, tmp_path, "playground.png")

    page.click('[aria-controls="translate"]')
    translate = page.locator("#translate")
    fill_form(translate, {**TRANSLATION, "target": "python"})
    run_task(translate)  # the server refuses: its message is shown where the answer goes
    assert translate.locator(".answer").get_attribute("data-state") == "error"
    expect(translate.locator(".status.error")).to_have_text(
        "code is already Python: name another target language"
    )
    fill_form(translate, TRANSLATION)
    run_task(translate)
    answer = translate.locator(".answer")
    assert answer.get_attribute("data-state") == "done", answer.inner_text()
    assert answer.locator("pre").text_content() == translation
    assert int(answer.get_attribute("data-pieces")) > 1, "the answer came in one piece"
    save_screenshot(page, tmp_path, "playground-translate.png")

    # Stop aborts a request still waiting for its answer (held here, never answered).
    page.route("**/v1/tasks/explain", lambda route: None)
    page.click('[aria-controls="explain"]')
    explain = page.locator("#explain")
    explain.locator('button[type="submit"]').click()
    expect(explain.locator(".answer")).to_have_attribute("data-state", "streaming")
    explain.locator(".stop").click()
    expect(explain.locator(".answer")).to_have_attribute("data-state", "stopped")
    expect(explain.locator(".stop")).to_be_disabled()
    assert problems == []


def test_the_page_follows_the_systems_dark_scheme(browser, server):
    colours = "[document.body, document.querySelector('textarea')].map(e => getComputedStyle(e))"
    colours += ".flatMap(style => [style.backgroundColor, style.color])"
    shown = {}
    for scheme in ("light", "dark"):
        page = browser.new_page(color_scheme=scheme)
        page.goto(server + "/")
        shown[scheme] = [brightness(colour) for colour in page.evaluate(colours)]
    # Page and code box: a light background under dark text, and the other way round.
    assert all(bg > 200 and text < 80 for bg, text in pairs(shown["light"])), shown
    assert all(bg < 60 and text > 180 for bg, text in pairs(shown["dark"])), shown


def brightness(css_colour: str) -> float:
    """The mean of an ``rgb(r, g, b)`` colour's channels, 0 (black) to 255 (white)."""
    channels = [float(part) for part in css_colour.split("(")[1].rstrip(")").split(",")[:3]]
    return sum(channels) / 3


def pairs(values: list[float]) -> list[tuple[float, float]]:
    return list(zip(values[::2], values[1::2], strict=True))


# Runs in the page: api.js's reader over a stream whose events are cut at every 5th byte (in
# the middle of events, of "\r\n\r\n" and of a character's UTF-8 bytes), as a network may cut them.
READ_CUT_STREAMS = """async () => {
  const { streamTask } = await import("/playground/api.js");
  const answer = (events) => {
    const bytes = new TextEncoder().encode(events);
    const chunks = [];
    for (let at = 0; at < bytes.length; at += 5) chunks.push(bytes.slice(at, at + 5));
    window.fetch = async () => new Response(new ReadableStream({
      start(stream) { chunks.forEach((chunk) => stream.enqueue(chunk)); stream.close(); },
    }));
  };
  const read = async (events) => {
    answer(events);
    const messages = [];
    try {
      for await (const message of streamTask("complete", {})) messages.push(message);
    } catch (err) {
      messages.push({ thrown: err.message });
    }
    return messages;
  };
  const end = 'data: {"finish_reason": "stop", "usage": {"completion_tokens": 2}}\\n\\n';
  return {
    whole: await read('data: {"text": "中文 ab"}\\r\\n\\r\\ndata: {"text": "b"}\\n\\n' + end
                      + "data: [DONE]\\n\\n"),
    failed: await read('data: {"text": "a"}\\n\\ndata: {"error": {"message": "boom"}}\\n\\n'),
    cut: await read('data: {"text": "a"}\\n\\n'),
  };
}"""


def test_the_stream_reader_reassembles_events_cut_anywhere(browser, server):
    page = browser.new_page()
    page.goto(server + "/")
    read = page.evaluate(READ_CUT_STREAMS)
    end = {"finish_reason": "stop", "usage": {"completion_tokens": 2}}
    assert read["whole"] == [{"text": "中文 ab"}, {"text": "b"}, end]
    assert read["failed"] == [{"text": "a"}, {"thrown": "boom"}]
    assert read["cut"] == [{"text": "a"}, {"thrown": "the answer ended before its end mark: "
                                                     "the server stopped streaming"}]  # fmt: skip
