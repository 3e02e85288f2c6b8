"""How `geex run` reads a budget and shares a time budget between its stages.

`pytest tests/pipeline/test_budget.py`
"""

from __future__ import annotations

import pytest

from geex.errors import ConfigError
from geex.pipeline.budget import (
    MIN_TRAINING_SHARE,
    Budget,
    after_training_seconds,
    parse_budget,
    training_seconds,
)


@pytest.mark.parametrize(
    ("text", "budget"),
    [
        ("10m", Budget(seconds=600)),
        ("90s", Budget(seconds=90)),
        ("2h", Budget(seconds=7200)),
        ("2M tokens", Budget(tokens=2_000_000)),
        ("500k tokens", Budget(tokens=500_000)),
        ("850B tokens", Budget(tokens=850_000_000_000)),
    ],
)
def test_budgets(text, budget):
    assert parse_budget(text) == budget


@pytest.mark.parametrize("text", ["10", "fast", "3 parsecs", "5x tokens"])
def test_bad_budgets_say_what_is_expected(text):
    with pytest.raises(ConfigError, match="neither a time"):
        parse_budget(text)


@pytest.mark.parametrize("text", ["0s", "0m", "0 tokens"])
def test_an_empty_budget_is_refused(text):
    with pytest.raises(ConfigError, match="more than nothing"):
        parse_budget(text)


def test_training_gets_what_the_other_stages_leave():
    budget = Budget(seconds=600)
    reserve = after_training_seconds(problems=60, samples_per_problem=1)
    assert training_seconds(budget, elapsed=60, reserve=reserve) == 600 - 60 - reserve


def test_training_keeps_a_share_when_the_data_took_the_budget():
    budget = Budget(seconds=600)
    assert training_seconds(budget, elapsed=900, reserve=120) == MIN_TRAINING_SHARE * 600
