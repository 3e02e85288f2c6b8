"""The run report and the eval stage's line say how many samples a missing package left
unjudged, how to install it, and mark a pass@k (and the CodeGeeX-13B comparison) that counts
fewer problems than all.

`pytest tests/pipeline/test_report_unjudged.py`
"""

from __future__ import annotations

import json

import pytest

from geex.pipeline.report import write_report
from geex.pipeline.stage_eval import EvalStage
from geex.pipeline.stages import stage_summary

INSTALL = "geex eval prepare --npm js-md5@0.8.3"
MISSING = [{"package": "js-md5", "install": INSTALL, "samples": 2}]
JAVASCRIPT = {
    "problems": 4, "samples": 8, "judged": 6, "unavailable": 2,
    "pass@k": {"pass@1": 0.25}, "pass@k problems": {"pass@1": 3},
    "verdicts": {"passed": 2, "failed": 4, "unavailable": 2},
}  # fmt: skip
SUMMARY = {
    "title": "HumanEval-X, generation, n=2", "sandbox": "bwrap", "seconds": 1.0, "resumed": 0,
    "notes": [], "groups": {"JavaScript": JAVASCRIPT}, "overall": JAVASCRIPT,
    "missing_packages": MISSING,
}  # fmt: skip
RECORD = {"seconds": 1.0, "finished": "now", "pass@k": {"humanevalx": {"pass@1": 0.25}},
          "missing_toolchains": {}, "missing_packages": {"humanevalx": MISSING}}  # fmt: skip


@pytest.fixture
def reports(tmp_path):
    folder = tmp_path / "eval" / "humanevalx"
    folder.mkdir(parents=True)
    (folder / "summary.json").write_text(json.dumps(SUMMARY))
    (tmp_path / "run.json").write_text(json.dumps({"plan": {}, "stages": {"eval": RECORD}}))
    (tmp_path / "run.yaml").write_text("budget: 10m\n")
    html, markdown = write_report(tmp_path, stage_summary)
    return markdown.read_text(), html.read_text()


def test_report_names_the_unjudged_samples_and_their_install_command(reports):
    markdown, html = reports
    assert "2 of 8 samples could not be judged for want of a package" in markdown
    assert f"| js-md5 | 2 | {INSTALL} |" in markdown
    assert INSTALL in html and "2 of 8 samples could not be judged" in html


def test_report_marks_a_pass_at_k_and_comparison_over_fewer_problems(reports):
    markdown, html = reports
    assert "| 25.0% (3/4) |" in markdown
    assert "(fewer problems)" in markdown and "(fewer problems)" in html
    assert "does not compare one for one with CodeGeeX-13B" in markdown


def test_eval_stage_line_names_the_unjudged_samples():
    line = EvalStage().summary(RECORD)
    assert line == (
        f"humanevalx pass@1 25.0% (2 samples not judged for want of js-md5: `{INSTALL}`)"
    )


def test_eval_stage_line_of_an_older_run_without_the_field():
    record = {k: v for k, v in RECORD.items() if k != "missing_packages"}
    assert EvalStage().summary(record) == "humanevalx pass@1 25.0%"
