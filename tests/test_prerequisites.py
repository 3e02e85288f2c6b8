"""What a test lacks skips it here and fails it in CI; a hang, or a state that never comes, fails. `pytest tests/test_prerequisites.py`"""

from __future__ import annotations

import itertools
import json
import threading

import pytest

from tests.conftest import (
    finishes_within,
    in_ci,
    missing,
    required_module,
    required_program,
    settles,
    shared_path,
)

ABSENT_MODULE = "geex_test_no_such_module"
ABSENT_PROGRAM = "geex-test-no-such-program"


@pytest.mark.parametrize("value", ["true", "TRUE", "True", "1", "yes", "Yes", " true "])
def test_ci_values_that_count_as_set(monkeypatch, value):
    monkeypatch.setenv("CI", value)
    assert in_ci()


@pytest.mark.parametrize("value", ["", "false", "0", "no", "off", "nope"])
def test_ci_values_that_count_as_unset(monkeypatch, value):
    monkeypatch.setenv("CI", value)
    assert not in_ci()


def test_no_ci_variable_is_not_ci(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    assert not in_ci()


def test_missing_skips_with_its_reason_outside_ci(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="needs the thing"):
        missing("needs the thing")


def test_missing_fails_with_its_reason_in_ci(monkeypatch):
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="needs the thing"):
        missing("needs the thing")


@pytest.mark.parametrize(
    ("ci", "outcome"), [(None, pytest.skip.Exception), ("1", pytest.fail.Exception)]
)
def test_each_prerequisite_follows_the_rule(monkeypatch, ci, outcome):
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    with pytest.raises(outcome, match="reference data not found at .*no-such-folder"):
        shared_path("data", "no-such-folder")
    with pytest.raises(outcome, match=f"Python module '{ABSENT_MODULE}'"):
        required_module(ABSENT_MODULE)
    with pytest.raises(outcome, match=f"{ABSENT_PROGRAM} on PATH: install the Debian package x"):
        required_program(ABSENT_PROGRAM, package="x")


def test_what_is_there_is_returned(monkeypatch, tmp_path):
    monkeypatch.setenv("CI", "true")
    monkeypatch.setattr("tests.conftest.SHARED", tmp_path)
    (tmp_path / "data").mkdir()
    assert shared_path("data") == tmp_path / "data"
    assert required_module("json") is json
    assert required_program(ABSENT_PROGRAM, "sh", package="dash") == "sh"


def test_a_module_level_skip_is_allowed(monkeypatch):
    """Test modules call `required_module` at import time, where pytest refuses a plain skip."""
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception) as skipped:
        required_module(ABSENT_MODULE)
    assert skipped.value.allow_module_level


def test_finishes_within_returns_the_result_or_raises_the_error():
    assert finishes_within(60, lambda: 42, "an answer") == 42
    with pytest.raises(ZeroDivisionError):
        finishes_within(60, lambda: 1 / 0, "a division")


def test_finishes_within_fails_on_work_that_never_ends():
    release = threading.Event()
    try:
        with pytest.raises(pytest.fail.Exception, match="a wait still running after 0.1 s"):
            finishes_within(0.1, release.wait, "a wait")
    finally:
        release.set()  # let the left-behind thread end


def test_settles_waits_for_the_expected_value():
    counter = itertools.count()
    settles(lambda: min(next(counter), 3), 3, "a counter")
    assert next(counter) == 4  # polled until it got there, and no further


def test_settles_fails_with_the_last_value_seen():
    with pytest.raises(pytest.fail.Exception, match=r"leftovers: \[7\] after 0.1 s, expected \[\]"):
        settles(lambda: [7], [], "leftovers", seconds=0.1)
