"""`geex eval --out` writes only into an evaluation's own folder: another program's reports and
JSON lines are never written over or dropped; a line an interruption cut short is skipped.
`pytest tests/eval/test_out_folder.py`."""

from __future__ import annotations

import json

import pytest

from geex.errors import GeexError
from geex.eval.results import ResultsFile, check_results_folder
from tests.conftest import one_line_error, run_geex

RESULT = {"task_id": "Geex-Python/0", "completion_id": 0, "language": "python",
          "group": "Python", "verdict": "passed", "detail": "", "generation": "    return 1\u2028\n",
          "program": "", "stderr": "", "seconds": 0.1}  # fmt: skip


def test_a_report_of_someone_elses_is_not_written_over(tmp_path):
    (tmp_path / "report.md").write_text("mine")
    with pytest.raises(GeexError, match="holds report.md, which `geex eval` would write over"):
        check_results_folder(tmp_path)


def test_files_an_evaluation_does_not_write_are_left_alone(tmp_path):
    """A samples file kept beside its results, a desktop's index: no reason to refuse."""
    (tmp_path / "gens.jsonl").write_text("{}\n")
    (tmp_path / ".DS_Store").write_bytes(b"\0")
    check_results_folder(tmp_path)
    (tmp_path / "report.md").write_text("# Evaluation")
    (tmp_path / "results.jsonl").write_text("")  # an earlier run's, interrupted early
    check_results_folder(tmp_path)


def test_a_results_file_with_another_programs_lines_is_refused(tmp_path):
    (tmp_path / "results.jsonl").write_text(json.dumps(RESULT) + "\n" + '{"mine": 1}\n')
    with pytest.raises(GeexError, match="line 2 holds no result of `geex eval`"):
        check_results_folder(tmp_path)


def test_lines_cut_short_by_interruptions_are_an_evaluations_own(tmp_path):
    """A cut line (then run on by the next append) and a U+2028 inside a generation, which
    str.splitlines would take for a line break, leave the folder an evaluation's."""
    line = json.dumps(RESULT, ensure_ascii=False)
    cut = line.encode()[:-3] + "é".encode()[:1]  # cut mid-character, then run on
    path = tmp_path / "results.jsonl"
    path.write_bytes(line[:30].encode() + line.encode() + b"\n" + line.encode() + b"\n" + cut)
    check_results_folder(tmp_path)
    assert ResultsFile(path).unreadable_lines() == [1, 3]
    assert list(ResultsFile(path).load()) == [("Geex-Python/0", 0)]
    check_results_folder(tmp_path / "absent")


def test_geex_eval_leaves_a_foreign_folder_as_it_was(tmp_path, checkpoint):
    """Refused before the model is loaded: not even its digests are kept there."""
    (tmp_path / "report.md").write_text("my notes")
    result = run_geex("eval", "embedded", "--model", checkpoint, "--languages", "python",
                      "--limit", "1", "--no-progress", "--out", tmp_path)  # fmt: skip
    assert "holds report.md, which `geex eval` would write over" in one_line_error(result)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.md"]
    (tmp_path / "results.jsonl").write_text('{"mine": 1}\n')
    result = run_geex("eval", "embedded", "--canonical", "--languages", "python", "--limit", "1",
                      "--no-progress", "--out", tmp_path)  # fmt: skip
    assert "holds no result of `geex eval`" in one_line_error(result)
    assert (tmp_path / "results.jsonl").read_text() == '{"mine": 1}\n'
    assert (tmp_path / "report.md").read_text() == "my notes"
