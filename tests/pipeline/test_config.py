"""The run file of `geex run`: typos are named with the valid fields, example files load.

`pytest tests/pipeline/test_config.py`
"""

from __future__ import annotations

from pathlib import Path

import pytest

from geex.errors import ConfigError
from geex.pipeline import load_run_config, run_config

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@pytest.mark.parametrize(
    ("fields", "named", "suggested"),
    [
        ({"budjet": "10m"}, "'budjet'", "'budget'"),
        ({"data": {"filter": "codex"}}, "'data.filter'", "'filters'"),
        ({"eval": {"temprature": 0.2}}, "'eval.temprature'", "'temperature'"),
    ],
)
def test_a_typo_names_the_field_the_closest_and_the_valid_ones(fields, named, suggested):
    with pytest.raises(ConfigError) as caught:
        run_config(fields)
    message = str(caught.value)
    assert named in message and f"did you mean {suggested}" in message
    assert "valid fields" in message


def test_a_typo_in_train_fields_lists_the_valid_ones():
    with pytest.raises(
        ConfigError,
        match=r"'train.presett' \(did you mean 'preset'\?\); valid fields of train: .*preset",
    ):
        run_config({"train": {"presett": "small"}})


def test_a_bad_value_is_refused_before_anything_runs():
    with pytest.raises(ConfigError, match="budget"):
        run_config({"budget": "soon"})
    with pytest.raises(ConfigError, match="precision"):
        run_config({"train": {"precision": "fp8"}})
    with pytest.raises(ConfigError, match="eval.n 4 with temperature 0"):
        run_config({"eval": {"n": 4}})


@pytest.mark.parametrize("name", ["max_time", "max_tokens", "max_steps"])
def test_budgets_in_train_fields_are_refused_for_the_run_budget(name):
    with pytest.raises(ConfigError, match=f"train.{name} is set by `geex run`"):
        run_config({"train": {name: 60}})


def test_command_line_values_replace_file_fields(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("out: a\nbudget: 3m\ntrain: {preset: tiny, precision: fp32}\n")
    config = load_run_config(path, out="b", **{"train.preset": "small", "budget": None})
    assert (config.out, config.budget) == ("b", "3m")
    assert config.train == {"preset": "small", "precision": "fp32"}


def test_the_run_decontaminates_against_what_it_evaluates(tmp_path):
    config = run_config({"eval": {"humanevalx": str(tmp_path)}})
    assert config.data_config().decontaminate == ["embedded", f"humanevalx:{tmp_path}"]


def test_unreadable_and_non_mapping_files_are_clear_errors(tmp_path):
    with pytest.raises(ConfigError, match="cannot read the run file"):
        load_run_config(tmp_path / "absent.yaml")
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="must hold a mapping of fields"):
        load_run_config(tmp_path / "list.yaml")
    (tmp_path / "bad.yaml").write_text("out: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_run_config(tmp_path / "bad.yaml")


@pytest.mark.parametrize("name", ["laptop.yaml", "codegeex-13b.yaml"])
def test_example_run_files_load(name):
    config = load_run_config(CONFIGS / name)
    assert config.train_config(config.budget_spec, 60).preset
