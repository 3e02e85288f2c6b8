"""The report as a person sees it: rendered by headless Chromium, then the screenshot checked.

`pytest tests/pipeline/test_report_render.py` (needs the Debian package chromium, which
`scripts/setup.sh --dev` installs).
"""

from __future__ import annotations

import subprocess

import numpy as np

from tests.chromium import chromium_program


def screenshot(html, png, width=1200, height=5000):
    browser = chromium_program()
    subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         f"--window-size={width},{height}", f"--screenshot={png}", html.as_uri()],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    from PIL import Image

    return Image.open(png).convert("RGB")


def colour_share(image, colour, tolerance=24):
    """The share of the pixels within ``tolerance`` of ``colour`` (per channel)."""
    pixels = np.asarray(image, dtype=np.int16)
    near = (np.abs(pixels - np.array(colour, dtype=np.int16)) <= tolerance).all(axis=-1)
    return float(near.mean())


def test_the_rendered_report_shows_text_tables_and_figures(finished_run, tmp_path):
    _, result = finished_run
    image = screenshot(result.out / "report.html", tmp_path / "report.png")
    assert image.size == (1200, 5000)
    white = colour_share(image, (255, 255, 255), tolerance=2)
    assert white < 0.93, "the page is (nearly) blank"
    # The figures' bars and curves are matplotlib blue; headings and rules are dark blue.
    assert colour_share(image, (0x1F, 0x77, 0xB4)) > 0.002, "no figure was drawn"
    assert colour_share(image, (0x1F, 0x4E, 0x79)) > 0.0002, "no section heading was drawn"
    # The top of the page is the overview: text on a white page, not an error page.
    top = image.crop((0, 0, 1200, 600))
    assert 0.7 < colour_share(top, (255, 255, 255), tolerance=2) < 0.995
