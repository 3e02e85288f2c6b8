"""geex.config.from_dict: unknown, mistyped and missing fields are refused by their dotted name.

`pytest tests/test_config.py`
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from geex.config import from_dict, option
from geex.errors import ConfigError


@dataclass
class Schedule:
    warmup: int = 10
    betas: tuple[float, float] = (0.9, 0.95)
    shape: Literal["cosine", "linear"] = "cosine"

    def __post_init__(self) -> None:
        if self.warmup < 0:
            raise ConfigError(f"warmup must be >= 0, got {self.warmup}")


@dataclass
class Recipe:
    name: str
    rate: float = 1e-3
    steps: int | None = None
    folder: Path | None = None
    tags: list[str] = field(default_factory=list)
    fast: bool = False
    mode: str = option("a", choices=("a", "b"))
    schedule: Schedule = field(default_factory=Schedule)


def test_an_unknown_key_names_the_closest_and_the_valid_fields():
    with pytest.raises(ConfigError) as caught:
        from_dict(Recipe, {"name": "x", "rat": 0.1}, kind="recipe")
    assert str(caught.value) == (
        "unknown recipe config field 'rat' (did you mean 'rate'?); valid fields: "
        "name, rate, steps, folder, tags, fast, mode, schedule"
    )


def test_an_unknown_nested_key_is_named_by_its_full_dotted_path():
    with pytest.raises(ConfigError) as caught:
        from_dict(Recipe, {"name": "x", "schedule": {"warmpu": 3}}, "run")
    message = str(caught.value)
    assert "field 'run.schedule.warmpu' (did you mean 'warmup'?)" in message
    assert message.endswith("valid fields of run.schedule: warmup, betas, shape")


@pytest.mark.parametrize(
    ("fields", "named", "wanted"),
    [
        ({"steps": "many"}, "'steps'", "an integer"),
        ({"rate": [1]}, "'rate'", "a number"),
        ({"fast": "yes"}, "'fast'", "true or false"),
        ({"tags": "python"}, "'tags'", "a list (for one item write tags: [python])"),
        ({"tags": {"python": 1}}, "'tags'", "a list"),
        ({"tags": ["python", 3.5j]}, "'tags[1]'", "a string"),
        ({"schedule": {"betas": [0.9]}}, "'schedule.betas'", "a list of 2 values"),
        ({"schedule": {"shape": "step"}}, "'schedule.shape'", "one of cosine, linear"),
        ({"mode": "c"}, "'mode'", "one of a, b"),
        ({"schedule": 3}, "'schedule'", "a mapping of Schedule fields"),
    ],
)
def test_a_wrong_type_names_the_field_and_what_it_must_be(fields, named, wanted):
    with pytest.raises(ConfigError, match=re.escape(f"field {named} must be {wanted}, got")):
        from_dict(Recipe, {"name": "x", **fields})


def test_loose_yaml_values_are_coerced_to_the_annotated_types():
    recipe = from_dict(
        Recipe,
        {
            "name": 7,  # a YAML number where a string is wanted
            "rate": "3e-4",  # YAML 1.1 reads this as a string
            "steps": 1000.0,
            "folder": "runs/a",
            "schedule": {"betas": [0.8, 1]},
        },
    )
    assert (recipe.name, recipe.rate, recipe.steps) == ("7", 3e-4, 1000)
    assert isinstance(recipe.steps, int) and recipe.folder == Path("runs/a")
    assert recipe.schedule.betas == (0.8, 1.0) and isinstance(recipe.schedule, Schedule)


def test_a_fractional_number_is_not_an_integer():
    with pytest.raises(ConfigError, match="'steps' must be an integer, got 2.5"):
        from_dict(Recipe, {"name": "x", "steps": 2.5})


def test_a_missing_required_field_is_a_config_error():
    with pytest.raises(ConfigError, match="name"):
        from_dict(Recipe, {})


def test_a_nested_config_check_is_prefixed_with_where_it_is():
    with pytest.raises(ConfigError, match=r"^schedule: warmup must be >= 0, got -1$"):
        from_dict(Recipe, {"name": "x", "schedule": {"warmup": -1}})


def test_a_non_mapping_is_refused():
    with pytest.raises(ConfigError, match="must be a mapping of Recipe fields"):
        from_dict(Recipe, ["name"])
