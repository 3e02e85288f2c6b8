"""`geex train` refuses settings out of range in one line, before a run starts: a budget of
nothing (which would save an untrained model as done), a negative seed, an impossible
optimiser. `pytest tests/train/test_config_ranges.py`."""

from __future__ import annotations

import re

import pytest

from geex.cli import main
from geex.errors import ConfigError
from geex.train.config import TrainConfig
from tests.conftest import one_line_error, run_geex


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({"max_steps": -5}, "max_steps must be >= 1, got -5"),
        ({"max_steps": 0}, "max_steps must be >= 1, got 0"),
        ({"max_tokens": 0}, "max_tokens must be >= 1"),
        ({"max_time": -1.0}, "max_time must be a number of seconds > 0"),
        ({"max_time": float("nan")}, "max_time must be a number of seconds > 0"),
        ({"seq_len": 0}, "seq_len must be >= 1"),
        ({"seed": -1}, "seed must be >= 0"),
        ({"eval_tokens": -5}, "eval_tokens must be >= 0"),
        ({"dropout": 1.0}, "dropout must be in [0, 1)"),
        ({"optim": {"lr": -1.0}}, "optim.lr must be >= 0"),
        ({"optim": {"lr": float("nan")}}, "optim.lr must be >= 0"),
        ({"optim": {"eps": -1.0}}, "optim.eps must be > 0"),
        ({"optim": {"betas": (2.0, 0.5)}}, "optim.betas must be two numbers in [0, 1)"),
        ({"optim": {"warmup_steps": -1}}, "optim.warmup_steps must be >= 0"),
        ({"optim": {"decay_steps": 0}}, "optim.decay_steps must be >= 1"),
    ],
)
def test_out_of_range_settings_are_refused(fields, says):
    with pytest.raises(ConfigError, match=re.escape(says)):
        TrainConfig(**fields)


def test_the_cli_refuses_them_in_one_line_before_writing_anything(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--data", str(tmp_path), "--out", str(out), "--max-steps", "-5"]) == 2
    err = capsys.readouterr().err
    assert "max_steps must be >= 1, got -5" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_the_defaults_and_open_ended_settings_pass():
    TrainConfig()
    TrainConfig(checkpoint_every=0, eval_every=0, eval_tokens=0, max_steps=1, seed=0)


def test_nproc_errors_are_one_line_with_the_processs_status(tmp_path):
    """Under --nproc the failed process's own error is the one line, and its status the exit
    status; torchrun's report of the failure is not printed."""
    result = run_geex("train", "--nproc", "-1", "--data", tmp_path, "--out", tmp_path / "o")
    assert "--nproc must be >= 1, got -1" in one_line_error(result)
    result = run_geex("train", "--nproc", "1", "--device", "cpu", "--data", tmp_path / "nope",
                      "--out", tmp_path / "o")  # fmt: skip
    assert result.returncode == 2
    assert "is not a Geex dataset" in one_line_error(result)
