"""`geex eval --out` writes only into an evaluation's own folder: another program's files and
JSON lines are never written over or dropped; a line an interruption cut short is skipped.
`pytest tests/eval/test_out_folder.py`."""

from __future__ import annotations

import json

import pytest

from geex.errors import GeexError
from geex.eval.results import ResultsFile, check_results_folder
from geex.eval.run import EVAL_OUTPUTS
from tests.conftest import one_line_error, run_geex

RESULT = {"task_id": "Geex-Python/0", "completion_id": 0, "language": "python",
          "group": "Python", "verdict": "passed", "detail": "", "generation": "    return 1\u2028\n",
          "program": "", "stderr": "", "seconds": 0.1}  # fmt: skip


def test_a_folder_with_other_files_is_refused(tmp_path):
    (tmp_path / "notes.md").write_text("mine")
    with pytest.raises(GeexError, match="holds 'notes.md', which `geex eval` does not write"):
        check_results_folder(tmp_path, EVAL_OUTPUTS)


def test_a_results_file_with_another_programs_lines_is_refused(tmp_path):
    (tmp_path / "results.jsonl").write_text(json.dumps(RESULT) + "\n" + '{"mine": 1}\n')
    with pytest.raises(GeexError, match="line 2 holds no result of `geex eval`"):
        check_results_folder(tmp_path, EVAL_OUTPUTS)


def test_lines_cut_short_by_interruptions_are_an_evaluations_own(tmp_path):
    """A cut line (then run on by the next append) and a U+2028 inside a generation, which
    str.splitlines would take for a line break, leave the folder an evaluation's."""
    line = json.dumps(RESULT, ensure_ascii=False)
    (tmp_path / "results.jsonl").write_text(line[:30] + line + "\n" + line + "\n" + line[:20])
    check_results_folder(tmp_path, EVAL_OUTPUTS)
    assert ResultsFile(tmp_path / "results.jsonl").unreadable_lines() == [1, 3]
    check_results_folder(tmp_path / "absent", EVAL_OUTPUTS)


def test_geex_eval_leaves_a_foreign_folder_as_it_was(tmp_path):
    (tmp_path / "report.md").write_text("my notes")
    (tmp_path / "results.jsonl").write_text('{"mine": 1}\n')
    result = run_geex("eval", "embedded", "--canonical", "--languages", "python", "--limit", "1",
                      "--no-progress", "--out", tmp_path)  # fmt: skip
    assert "holds no result of `geex eval`" in one_line_error(result)
    assert (tmp_path / "results.jsonl").read_text() == '{"mine": 1}\n'
    assert (tmp_path / "report.md").read_text() == "my notes"
