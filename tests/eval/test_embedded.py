"""The embedded evaluation set shipped in the package: every reference solution passes, and
each problem's tests reject another problem's solution.
Run: .venv/bin/python -m pytest tests/eval/test_embedded.py -q"""

from __future__ import annotations

from geex.eval.backends import Sample, canonical_samples
from geex.eval.problems import load_embedded
from geex.eval.tasks import generation_tasks


def test_reference_solutions_pass(evaluator):
    samples = canonical_samples(generation_tasks(load_embedded()))
    results = list(evaluator.judge(samples))
    assert len(results) == 60
    assert {r.task_id: r.verdict for r in results if r.verdict != "passed"} == {}


def test_tests_reject_a_neighbour_solution(evaluator):
    tasks = generation_tasks(load_embedded(["python", "javascript"]))
    by_id = {t.task_id: t for t in tasks}
    samples = []
    for task in tasks:
        prefix, number = task.task_id.rsplit("/", 1)
        neighbour = by_id[f"{prefix}/{(int(number) + 1) % 10}"]
        samples.append(Sample(task, 0, neighbour.problem.canonical_solution))
    results = list(evaluator.judge(samples))
    assert [r.task_id for r in results if r.verdict == "passed"] == []
