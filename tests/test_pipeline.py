"""`geex run`: budgets parse, and the pipeline goes from code files to samples and resumes.

`pytest tests/test_pipeline.py`
"""

from __future__ import annotations

import random

import pytest

from geex.errors import ConfigError
from geex.pipeline import Budget, parse_budget, run_pipeline

WORDS = [
    "alpha",
    "beta",
    "gamma",
    "delta",
    "total",
    "count",
    "index",
    "value",
    "items",
    "result",
    "scale",
    "offset",
]


def module_text(seed: int) -> str:
    """A distinct module of ~2 KB: the data stage drops files under 1 KB and near duplicates."""
    rng = random.Random(seed)
    functions = []
    for f in range(8):
        a, b, c = rng.sample(WORDS, 3)
        functions.append(
            f"def {a}_{b}_{seed}_{f}({a}, {b}):\n"
            f'    """Combine {a} and {b} with {c}."""\n'
            f"    {c} = {a} * {rng.randint(2, 99)} + {b} - {rng.randint(1, 999)}\n"
            f"    return [{c} + i for i in range({rng.randint(3, 50)})]\n"
        )
    return "\n\n".join(functions)


@pytest.mark.parametrize(
    ("text", "budget"),
    [
        ("10m", Budget(seconds=600)),
        ("90s", Budget(seconds=90)),
        ("2h", Budget(seconds=7200)),
        ("2M tokens", Budget(tokens=2_000_000)),
        ("500k tokens", Budget(tokens=500_000)),
    ],
)
def test_budgets(text, budget):
    assert parse_budget(text) == budget


@pytest.mark.parametrize("text", ["10", "fast", "3 parsecs", "5x tokens"])
def test_bad_budgets_say_what_is_expected(text):
    with pytest.raises(ConfigError, match="neither a time"):
        parse_budget(text)


def test_pipeline_packs_trains_samples_and_skips_finished_stages(tmp_path, capsys):
    code = tmp_path / "code"
    code.mkdir()
    for i in range(40):
        (code / f"module_{i}.py").write_text(module_text(i))
    out = tmp_path / "run"
    made = run_pipeline(out, budget=Budget(tokens=8192), sources=[code], vocab_size=600)
    assert (made["data"] / "dataset.json").is_file()
    assert (made["model"] / "model.safetensors").is_file()
    samples = made["samples"].read_text()
    assert "## python" in samples and "def fibonacci(n):" in samples
    first_data = (made["data"] / "dataset.json").stat().st_mtime_ns
    run_pipeline(out, budget=Budget(tokens=8192), sources=[code], vocab_size=600)
    assert (made["data"] / "dataset.json").stat().st_mtime_ns == first_data  # not packed again
    assert "already packed" in capsys.readouterr().err
