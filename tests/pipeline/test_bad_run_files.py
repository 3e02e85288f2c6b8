"""A run file that cannot be read as run fields stops `geex run` with one line naming it.

`pytest tests/pipeline/test_bad_run_files.py`
"""

from __future__ import annotations

import pytest

from tests.pipeline.conftest import geex_refuses


def test_a_binary_run_file_is_named_as_not_text(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_bytes(bytes(range(128, 256)) * 4)
    error = geex_refuses("run", str(path))
    assert f"the run file {path} is not text" in error


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n"])
def test_an_empty_run_file_is_an_error_not_the_default_run(tmp_path, text):
    path = tmp_path / "run.yaml"
    path.write_text(text)
    error = geex_refuses("run", str(path), "--out", str(tmp_path / "out"))
    assert f"run file {path} is empty" in error
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("out: [unclosed\n", "expected ',' or ']'"),
        ("out: x\x00\n", "unacceptable character #x0000"),
        ("- out\n- budget\n", "must hold a mapping of fields (name: value), got list"),
    ],
)
def test_a_run_file_that_is_not_a_yaml_mapping_is_one_line(tmp_path, text, problem):
    path = tmp_path / "run.yaml"
    path.write_text(text)
    error = geex_refuses("run", str(path))
    assert str(path) in error and problem in error


def test_sources_given_as_a_string_are_refused_not_walked_letter_by_letter(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(f"out: {tmp_path / 'out'}\ndata:\n  sources: /\n")
    error = geex_refuses("run", str(path))
    assert (
        "run config field 'data.sources' must be a list (for one item write sources: [/])" in error
    )
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("value", ["[tiny]", "{name: tiny}"])
def test_a_preset_that_is_not_a_string_is_named(tmp_path, value):
    path = tmp_path / "run.yaml"
    path.write_text(f"train:\n  preset: {value}\n")
    error = geex_refuses("run", str(path))
    assert "run config field 'train.preset' must be a string" in error
