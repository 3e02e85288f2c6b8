"""pass@k: the product form equals the binomial definition and is reported only where n >= k.
Run: .venv/bin/python -m pytest tests/eval/test_passk.py -q"""

from __future__ import annotations

from math import comb

import pytest

from geex.eval.results import SampleResult
from geex.eval.scores import pass_at_k, score


@pytest.mark.parametrize("n", [1, 2, 5, 10, 37, 100])
def test_product_form_matches_binomials(n):
    for c in range(n + 1):
        for k in range(1, n + 1):
            exact = 1.0 - comb(n - c, k) / comb(n, k)
            assert pass_at_k(n, c, k) == pytest.approx(exact, abs=1e-12)


def test_large_n_is_finite_and_ordered():
    values = [pass_at_k(1000, 3, k) for k in (1, 10, 100)]
    assert values == sorted(values)
    assert values[0] == pytest.approx(0.003)
    assert 0.0 < values[2] < 1.0


def test_edge_cases():
    assert pass_at_k(5, 0, 1) == 0.0
    assert pass_at_k(5, 5, 5) == 1.0
    assert pass_at_k(10, 2, 9) == 1.0  # fewer than k failures: every draw of k has a pass
    with pytest.raises(ValueError):
        pass_at_k(5, 1, 10)


def _result(task_id, passed, group="Python"):
    return SampleResult(task_id, 0, "python", group, "passed" if passed else "failed",
                        "", "", "", "", 0.0)  # fmt: skip


def test_scores_report_k_only_where_every_problem_has_enough_samples():
    results = [_result("P/0", True)] * 10 + [_result("P/1", False)] * 3
    scores = score(results, ks=(1, 10, 100))
    assert set(scores.overall.pass_at) == {1}  # P/1 has only 3 samples
    assert scores.overall.pass_at[1] == pytest.approx(0.5)
    assert scores.overall.min_samples == 3
    assert scores.overall.covered == {1: 2} and not scores.overall.partial(1)
    assert scores.groups["Python"].verdicts == {"passed": 10, "failed": 3}
