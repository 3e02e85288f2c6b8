"""Debian's Chromium for the tests that look at a page as a person sees it: finding the program
(a missing browser skips the test, or fails it in CI, by `tests.conftest.missing`), launching it
headless under Playwright, and saving the screenshots docs/ shows.

Playwright is only the driver here: it never downloads a browser of its own, so what the tests
see is the Chromium that `scripts/setup.sh --dev` installs from Debian."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.conftest import required_module, required_program

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
# A screenshot for docs/ stays small enough to keep in the repository.
DOCS_SCREENSHOT_BYTES = 200_000


def chromium_program() -> str:
    """The full path of the first Chromium on PATH, or `missing` naming the Debian package."""
    found = shutil.which(required_program(*BROWSERS, package="chromium"))
    assert found is not None
    return found


@contextmanager
def launched_chromium() -> Iterator:
    """A headless Chromium driven by Playwright, closed on leaving."""
    program = chromium_program()
    required_module("playwright.sync_api")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=program)
        try:
            yield browser
        finally:
            browser.close()


def save_screenshot(page, folder: Path, name: str) -> Path:
    """The page as shown, in ``folder`` and, when GEEX_DOCS_SCREENSHOTS names a folder, there."""
    png = folder / name
    page.screenshot(path=png)
    docs = os.environ.get("GEEX_DOCS_SCREENSHOTS")
    if docs:
        Path(docs).mkdir(parents=True, exist_ok=True)
        shutil.copy(png, Path(docs) / name)
        assert png.stat().st_size < DOCS_SCREENSHOT_BYTES, f"{name} is too big for the docs"
    return png
