"""`geex eval`: canonical and --samples runs, and one-line errors for a missing folder, unknown
task ids, a missing toolchain. Run: .venv/bin/python -m pytest tests/eval/test_cli.py -q"""

from __future__ import annotations

import gzip
import json

import pytest

from geex.cli import main
from geex.eval.problems import load_embedded
from tests.conftest import one_line_error, run_geex


def run(capsys, *argv):
    code = main(["eval", *argv, "--no-progress"])
    out, err = capsys.readouterr()
    return code, out, err


def test_canonical_humanevalx_subset(capsys, humanevalx_dir, tmp_path):
    code, out, err = run(capsys, "humanevalx", "--data", str(humanevalx_dir), "--canonical",
                         "--languages", "python", "cpp", "--limit", "3", "--out", str(tmp_path))  # fmt: skip
    assert code == 0, err
    assert "all canonical verdicts are as expected" in out
    assert len((tmp_path / "results.jsonl").read_text().splitlines()) == 6


def test_samples_file(capsys, tmp_path):
    problems = {p.task_id: p for p in load_embedded(["python"])}
    samples = tmp_path / "samples.jsonl.gz"
    with gzip.open(samples, "wt") as out:
        for task_id, p in problems.items():
            out.write(json.dumps({"task_id": task_id, "generation": p.canonical_solution}) + "\n")
            out.write(json.dumps({"task_id": task_id, "completion": "    return None\n"}) + "\n")
    code, out, err = run(capsys, "embedded", "--samples", str(samples), "--languages", "python",
                         "--out", str(tmp_path / "out"))  # fmt: skip
    assert code == 0, err
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["overall"]["pass@k"] == {"pass@1": 0.5}
    assert summary["overall"]["samples"] == 20


def test_missing_folder(capsys, tmp_path):
    code, _, err = run(capsys, "humanevalx", "--data", str(tmp_path / "nope"), "--canonical")
    assert code == 2 and "does not exist" in err and len(err.strip().splitlines()) == 1


def test_unknown_task_ids(capsys, tmp_path):
    samples = tmp_path / "samples.jsonl"
    samples.write_text(json.dumps({"task_id": "Python/0", "generation": "    pass\n"}) + "\n")
    code, _, err = run(capsys, "embedded", "--samples", str(samples), "--languages", "python")
    assert code == 2 and "tasks this benchmark does not have (e.g. Python/0)" in err


def test_missing_toolchain_names_the_debian_package(capsys, monkeypatch):
    import geex.eval.runners.base as base

    real_which = base.shutil.which
    monkeypatch.setattr(
        base.shutil, "which", lambda tool: None if tool == "node" else real_which(tool)
    )
    code, _, err = run(capsys, "embedded", "--canonical", "--languages", "js")
    assert code == 2 and "install the Debian package nodejs" in err


def test_something_to_judge_is_required(capsys):
    code, _, err = run(capsys, "embedded")
    assert code == 2 and "--canonical" in err


@pytest.mark.parametrize("flag", [["--timeout", "0"], ["--workers", "0"]])
def test_bad_limits(capsys, flag):
    code, _, err = run(capsys, "embedded", "--canonical", "--languages", "python", *flag)
    assert code == 2 and "must be" in err


def test_samples_of_languages_left_out_are_skipped(capsys, tmp_path):
    samples = tmp_path / "samples.jsonl"
    lines = [{"task_id": "Geex-Python/0", "generation": "    return ''\n"},
             {"task_id": "Geex-Rust/0", "generation": "    String::new()\n}\n"}]  # fmt: skip
    samples.write_text("".join(json.dumps(x) + "\n" for x in lines))
    code, _, err = run(capsys, "embedded", "--samples", str(samples), "--languages", "python")
    assert code == 0, err


def test_translation_canonical(capsys, tmp_path):
    code, _, err = run(capsys, "embedded", "--canonical", "--task", "translation",
                         "--languages", "python", "js", "--out", str(tmp_path))  # fmt: skip
    assert code == 0, err
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert set(summary["groups"]) == {"Python -> JavaScript", "JavaScript -> Python"}
    assert summary["overall"]["pass@k"] == {"pass@1": 1.0}
    # A generation run into the same folder keeps the translation results beside its own.
    code, _, err = run(capsys, "embedded", "--canonical", "--languages", "python",
                       "--out", str(tmp_path))  # fmt: skip
    assert code == 0, err
    assert len((tmp_path / "results.jsonl").read_text().splitlines()) == 30


@pytest.mark.parametrize("under", ["", "x"])
def test_an_out_that_is_or_lies_under_a_file_is_one_line(under, tmp_path):
    (tmp_path / "file").write_text("mine")
    out = tmp_path / "file" / under if under else tmp_path / "file"
    result = run_geex("eval", "embedded", "--canonical", "--languages", "python", "--limit", "1",
                      "--no-progress", "--out", out)  # fmt: skip
    assert result.returncode == 2
    assert str(out) in one_line_error(result)
    assert (tmp_path / "file").read_text() == "mine"
