"""``geex serve``'s start line says how the weights are held. `pytest tests/serve/test_start_line.py`."""

from __future__ import annotations

from geex.cli.serve import start_line
from geex.model.load_options import LoadOptions
from geex.serve.serve_limits import ServeLimits


def test_the_start_line_says_int8_weights():
    url = "http://127.0.0.1:8000"
    line = start_line("m", "cuda", url, ServeLimits(), LoadOptions(quantize="int8"), 16)
    assert "m on cuda, INT8 weights, at http://127.0.0.1:8000/v1 (no API key;" in line
    plain = start_line("m", "cuda", url, ServeLimits(api_key="k"), LoadOptions(), 16)
    assert "INT8" not in plain and "API key required" in plain
