"""pass@k with the unbiased estimator, per language (or translation pair) and overall.

pass@k (Chen et al. 2021, "Evaluating Large Language Models Trained on Code"): with n samples
of which c pass, the chance that at least one of k drawn without replacement passes is
1 - C(n-c, k) / C(n, k). The binomials overflow for n in the hundreds, so it is computed as
the product 1 - prod_{i=n-c+1}^{n} (1 - k / i). A k is reported only where every problem
has n >= k samples.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from geex.eval.results import SampleResult

DEFAULT_KS = (1, 10, 100)


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k for one problem with ``n`` samples, ``c`` of them passed."""
    if not 0 <= c <= n or k < 1:
        raise ValueError(f"need 0 <= c <= n and k >= 1, got n={n}, c={c}, k={k}")
    if k > n:
        raise ValueError(f"pass@{k} needs at least {k} samples, got {n}")
    if n - c < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


@dataclass
class GroupScore:
    """Scores of one language, one translation pair, or everything."""

    problems: int = 0
    samples: int = 0
    min_samples: int = 0  # the fewest samples any problem has
    pass_at: dict[int, float] = field(default_factory=dict)  # k -> mean pass@k
    verdicts: Counter = field(default_factory=Counter)


def score_group(results: Iterable[SampleResult], ks: Sequence[int] = DEFAULT_KS) -> GroupScore:
    per_task: dict[str, list[bool]] = defaultdict(list)
    verdicts: Counter = Counter()
    for result in results:
        per_task[result.task_id].append(result.passed)
        verdicts[result.verdict] += 1
    if not per_task:
        return GroupScore()
    counts = [(len(v), sum(v)) for v in per_task.values()]
    min_n = min(n for n, _ in counts)
    pass_at = {k: float(np.mean([pass_at_k(n, c, k) for n, c in counts])) for k in ks if k <= min_n}
    return GroupScore(len(per_task), sum(n for n, _ in counts), min_n, pass_at, verdicts)


@dataclass
class Scores:
    groups: dict[str, GroupScore]  # in the order the groups first appear
    overall: GroupScore


def score(results: Sequence[SampleResult], ks: Sequence[int] = DEFAULT_KS) -> Scores:
    by_group: dict[str, list[SampleResult]] = {}
    for result in results:
        by_group.setdefault(result.group, []).append(result)
    groups = {name: score_group(rs, ks) for name, rs in by_group.items()}
    return Scores(groups, score_group(results, ks))
