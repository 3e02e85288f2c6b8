"""A damaged file in a run folder is named in the report with what it left out, never a
silently missing section or a traceback.

`pytest tests/pipeline/test_report_damaged.py`
"""

from __future__ import annotations

import json

import pytest

from geex.pipeline.report import write_report
from geex.pipeline.stages import stage_summary

CARD = {
    "sources": ["code/"],
    "read": {"files": 3, "bytes": 300},
    "totals": {"files": 2, "bytes": 200, "tokens": 80, "validation_tokens": 4},
    "languages": {"python": {"files": 2, "bytes": 200, "tokens": 80, "validation_tokens": 4}},
    "removed": [],
}
RUN = {"plan": {}, "stages": {"data": {"seconds": 3.0, "finished": "now", "tokens": 80,
                                       "files": 2}}, "settings": {}}  # fmt: skip


@pytest.fixture
def run_folder(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "card.json").write_text(json.dumps(CARD))
    (tmp_path / "run.json").write_text(json.dumps(RUN))
    (tmp_path / "run.yaml").write_text("budget: 10m\n")
    return tmp_path


def report(out) -> tuple[str, str]:
    html, markdown = write_report(out, stage_summary)
    return markdown.read_text(), html.read_text()


def test_an_intact_folder_has_no_damaged_files_section(run_folder):
    markdown, _ = report(run_folder)
    assert "## Data" in markdown and "| python | 2 |" in markdown
    assert "Damaged files" not in markdown


def test_a_damaged_dataset_card_is_named_and_its_sections_left_out(run_folder):
    (run_folder / "data" / "card.json").write_text('{\n  "totals": {\n  "files": ,\n')
    markdown, html = report(run_folder)
    note = "data/card.json is damaged (not JSON at line 3): the data and tokenizer sections"
    assert note in markdown and note in html
    assert "## Data" not in markdown


def test_a_card_without_a_field_it_needs_is_named(run_folder):
    (run_folder / "data" / "card.json").write_text(json.dumps({"languages": {}}))
    markdown, _ = report(run_folder)
    assert "data/card.json is damaged (no field 'totals'): the data section is left out" in (
        markdown
    )


def test_a_damaged_run_file_is_named_and_the_rest_still_reported(run_folder):
    (run_folder / "run.json").write_text('{"stages": {"data": ')
    (run_folder / "run.yaml").write_text("budget: [10m\n")
    markdown, html = report(run_folder)
    assert "run.json is damaged (not JSON at line 1): the stage table and the budget" in markdown
    assert "run.yaml is damaged (not YAML at line 2): the budget is not shown" in markdown
    assert "run.json is damaged" in html
    assert "## Data" in markdown  # what can be read is still shown


def test_a_run_file_with_a_stage_record_of_the_wrong_shape_is_named(run_folder):
    (run_folder / "run.json").write_text(json.dumps({"stages": {"data": {"tokens": 1}}}))
    markdown, _ = report(run_folder)
    assert "run.json is damaged (no field 'seconds'): the stage table is left out" in markdown


def test_a_damaged_results_file_is_named(run_folder):
    folder = run_folder / "eval" / "embedded"
    folder.mkdir(parents=True)
    result = {"task_id": "Python/0", "completion_id": 0, "language": "python",
              "group": "Python", "verdict": "passed", "detail": "", "generation": "1)",
              "program": "print(1)", "stderr": "", "seconds": 0.1}  # fmt: skip
    (folder / "results.jsonl").write_text(json.dumps(result) + "\n{not json\n")
    markdown, html = report(run_folder)
    note = (
        "eval/embedded/results.jsonl is damaged (line 2 not a result): the judged completions "
        "are left out"
    )
    assert note in markdown and note in html


def test_a_damaged_evaluation_summary_is_named(run_folder):
    folder = run_folder / "eval" / "humanevalx"
    folder.mkdir(parents=True)
    (folder / "summary.json").write_bytes(b"\xff\xfe garbage")
    markdown, _ = report(run_folder)
    assert "eval/humanevalx/summary.json is damaged (" in markdown
    assert "the HumanEval-X scores are left out" in markdown
