"""`geex run` on the command line: a run file or sources, and errors in one line.

`pytest tests/pipeline/test_cli.py`
"""

from __future__ import annotations

import pytest

from geex.cli import main
from geex.cli.run import config_from_args
from tests.conftest import one_line_error, run_geex


def parse(argv):
    from geex.cli import build_parser

    return build_parser().parse_args(["run", *argv])


def test_a_config_typo_is_one_line_naming_the_field(tmp_path, capsys):
    path = tmp_path / "run.yaml"
    path.write_text("out: x\ntrain:\n  preset: tiny\neval:\n  temprature: 0.2\n")
    assert main(["run", str(path)]) == 2
    err = capsys.readouterr().err
    assert "unknown run config field 'eval.temprature' (did you mean 'temperature'?)" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_sources_and_options_make_the_config(tmp_path):
    config = config_from_args(parse([str(tmp_path), "--out", "o", "--budget", "3m",
                                     "--preset", "small", "--languages", "python", "js"]))  # fmt: skip
    assert config.data["sources"] == [str(tmp_path)]
    assert (config.out, config.budget, config.train["preset"]) == ("o", "3m", "small")
    assert config.eval.languages == ["python", "javascript"]


def test_a_run_file_with_options_replacing_its_fields(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("out: from-file\nbudget: 1h\n")
    config = config_from_args(parse([str(path), "--budget", "5m"]))
    assert (config.out, config.budget) == ("from-file", "5m")


def test_a_run_file_and_sources_together_are_refused(tmp_path, capsys):
    path = tmp_path / "run.yaml"
    path.write_text("out: x\n")
    assert main(["run", str(path), str(tmp_path)]) == 2
    assert "either a run file or sources" in capsys.readouterr().err


@pytest.mark.parametrize("budget", ["soon", "10"])
def test_a_bad_budget_is_one_line(budget, capsys):
    assert main(["run", "--budget", budget]) == 2
    assert "neither a time" in capsys.readouterr().err


@pytest.mark.parametrize("under", ["", "x"])
def test_an_out_that_is_or_lies_under_a_file_is_one_line(under, tmp_path):
    (tmp_path / "file").write_text("mine")
    out = tmp_path / "file" / under if under else tmp_path / "file"
    result = run_geex("run", tmp_path, "--out", out)
    assert result.returncode == 2
    assert str(out) in one_line_error(result)
    assert (tmp_path / "file").read_text() == "mine"


def test_a_folder_of_someone_elses_is_not_written_into(tmp_path, capsys):
    """A run writes run.yaml, report.md, data/, train/ ...: never over a user's own files."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "report.md").write_text("my notes")
    (project / "run.yaml").write_text("my: own\n")
    assert main(["run", str(tmp_path / "code"), "--out", str(project), "--stage", "report"]) == 2
    assert "is not a `geex run` output folder: give another --out" in capsys.readouterr().err
    assert (project / "report.md").read_text() == "my notes"
    assert (project / "run.yaml").read_text() == "my: own\n"


def test_an_uppercase_run_file_is_read_as_a_run_file(tmp_path):
    path = tmp_path / "LAPTOP.YAML"
    path.write_text("out: from-file\nbudget: 1h\n")
    assert config_from_args(parse([str(path)])).budget == "1h"


def test_a_report_of_a_folder_where_nothing_ran_is_refused(tmp_path, capsys):
    """It wrote an empty report and exited 0, as if the run were done."""
    out = tmp_path / "run"
    assert main(["run", "--out", str(out), "--stage", "report"]) == 2
    err = capsys.readouterr().err
    assert f"the report stage has nothing to read in {out}" in err
    assert "run the stages it needs first (data, train, eval, samples: leave out" in err
    assert not out.exists()


def test_a_stage_refused_for_its_inputs_names_only_the_stages_that_make_them(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", "--out", str(out), "--stage", "eval"]) == 2
    assert (
        "run the stages it needs first (data, train: leave out --stage" in capsys.readouterr().err
    )
