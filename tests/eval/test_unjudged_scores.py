"""Unavailable samples are never scored as failures: pass@k counts judged samples only, and the
summary, reports and results file say how many a missing package left unjudged, and how to
install it. Run: .venv/bin/python -m pytest tests/eval/test_unjudged_scores.py -q"""

from __future__ import annotations

import json

import pytest

from geex.eval.fingerprint import generation_fingerprint
from geex.eval.report import markdown
from geex.eval.results import ResultsFile, SampleResult
from geex.eval.run import EvalRun, evaluate, summary
from geex.eval.scores import score

from .conftest import inline_sample

INSTALL = "geex eval prepare --npm lodash"


def result(task_id: str, completion_id: int, verdict: str, package: str = "") -> SampleResult:
    return SampleResult(
        task_id, completion_id, "javascript", "JavaScript", verdict, "", "", "", "", 0.0,
        missing_package=package, install=INSTALL if package else "",
    )  # fmt: skip


RESULTS = [
    result("JavaScript/0", 0, "passed"),
    result("JavaScript/0", 1, "unavailable", "lodash"),
    result("JavaScript/0", 2, "unavailable", "lodash"),
    result("JavaScript/1", 0, "failed"),
    result("JavaScript/2", 0, "unavailable", "lodash"),  # a problem no sample could be judged on
]


def test_pass_at_k_counts_only_judged_samples():
    overall = score(RESULTS, ks=(1,)).overall
    # JavaScript/0: 1 of 1 judged passed; JavaScript/1: 0 of 1; JavaScript/2: left out.
    assert overall.pass_at == {1: pytest.approx(0.5)}
    assert (overall.problems, overall.samples, overall.judged) == (3, 5, 2)
    assert overall.unavailable == 3
    assert overall.covered == {1: 2}


def test_missing_packages_are_counted_with_their_install_command():
    overall = score(RESULTS, ks=(1,)).overall
    assert overall.missing_packages == {("lodash", INSTALL): 3}


def test_other_unavailable_samples_are_unjudged_without_a_package():
    toolchain = result("JavaScript/1", 1, "unavailable")  # e.g. node missing
    overall = score([*RESULTS, toolchain], ks=(1,)).overall
    assert overall.unavailable == 4
    assert overall.missing_packages == {("lodash", INSTALL): 3}
    assert overall.pass_at == {1: pytest.approx(0.5)}


def ten_samples(task_id: str, passed: int, unavailable: int = 0) -> list[SampleResult]:
    verdicts = ["passed"] * passed + ["unavailable"] * unavailable
    verdicts += ["failed"] * (10 - len(verdicts))
    return [
        result(task_id, i, v, "lodash" if v == "unavailable" else "")
        for i, v in enumerate(verdicts)
    ]


# JavaScript/0 lost one sample of ten: pass@10 counts JavaScript/1 only, and says so.
TEN_EACH = ten_samples("JavaScript/0", 3, unavailable=1) + ten_samples("JavaScript/1", 0)


def test_an_unavailable_sample_leaves_its_problem_out_of_that_k_alone():
    overall = score(TEN_EACH, ks=(1, 10)).overall
    assert set(overall.pass_at) == {1, 10}
    assert overall.covered == {1: 2, 10: 1}
    assert overall.pass_at[1] == pytest.approx((3 / 9 + 0 / 10) / 2)
    assert overall.pass_at[10] == pytest.approx(0.0)  # JavaScript/1 never passed
    assert overall.coverage(10) == " (1/2)" and overall.coverage(1) == ""


def test_summary_and_report_show_a_pass_at_k_over_fewer_problems():
    run = EvalRun("t", [], TEN_EACH, score(TEN_EACH, ks=(1, 10)), 1.0, "bwrap")
    data = summary(run)
    assert data["overall"]["problems"] == 2
    assert data["overall"]["pass@k"]["pass@10"] == 0.0
    assert data["overall"]["pass@k problems"] == {"pass@10": 1}
    report = markdown(run)
    assert "| 0.00 (1/2) |" in report
    assert "averages the a of b problems with at least k judged samples" in report


def run_of(results) -> EvalRun:
    return EvalRun("t", [], results, score(results, ks=(1,)), 1.0, "bwrap")


def test_summary_and_report_name_the_unjudged_samples():
    run = run_of(RESULTS)
    data = summary(run)
    assert data["overall"]["judged"] == 2
    assert data["overall"]["unavailable"] == 3
    assert data["missing_packages"] == [{"package": "lodash", "install": INSTALL, "samples": 3}]
    report = markdown(run)
    assert "pass@k counts only the 2 judged samples; 3 could not be judged here" in report
    assert f"| lodash | 3 | `{INSTALL}` |" in report


def test_report_without_unjudged_samples_has_no_such_section():
    assert "Samples not judged" not in markdown(run_of(RESULTS[:1]))


def test_results_file_keeps_the_verdict_kind_and_the_package(tmp_path):
    results = ResultsFile(tmp_path / "results.jsonl")
    for r in RESULTS:
        results.append(r)
    loaded = results.load()
    back = loaded[("JavaScript/2", 0)]
    assert (back.verdict, back.missing_package, back.install) == ("unavailable", "lodash", INSTALL)
    assert not back.judged
    line = json.loads((tmp_path / "results.jsonl").read_text().splitlines()[1])
    assert line["missing_package"] == "lodash"


GENERATOR = {"source": "a model"}


def test_resuming_judges_unavailable_samples_again_from_their_generation(evaluator, tmp_path):
    """A model run resumed after `geex eval prepare` does not generate those samples again."""
    sample = inline_sample("python", "def one():\n", "    return 1\n", "assert one() == 1\n")
    earlier = SampleResult(
        sample.task.task_id, 0, "python", "Python", "unavailable", "", sample.generation, "", "",
        0.0, missing_package="numpy", install="geex eval prepare --pip numpy",
        generation_fingerprint=generation_fingerprint(GENERATOR, sample.task),
    )  # fmt: skip
    ResultsFile(tmp_path / "results.jsonl").append(earlier)
    asked = []

    def generate(done):
        asked.append(set(done))
        return iter(())

    run = evaluate(
        evaluator, [sample.task], generate, generator=GENERATOR, out_dir=tmp_path, ks=(1,)
    )
    assert asked == [{(sample.task.task_id, 0)}]
    assert [r.verdict for r in run.results] == ["passed"]
    assert run.scores.overall.unavailable == 0
