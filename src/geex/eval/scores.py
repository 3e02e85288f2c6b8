"""pass@k with the unbiased estimator, per language (or translation pair) and overall.

pass@k (Chen et al. 2021, "Evaluating Large Language Models Trained on Code"): with n samples
of which c pass, the chance that at least one of k drawn without replacement passes is
1 - C(n-c, k) / C(n, k). The binomials overflow for n in the hundreds, so it is computed as
the product 1 - prod_{i=n-c+1}^{n} (1 - k / i). A k is reported where every problem was
drawn n >= k samples.

Only judged samples count: an "unavailable" sample (a toolchain or a package the benchmark
needs is missing here) says nothing of the model, so n is the number of judged samples of a
problem. pass@k averages the problems with at least k judged samples; the others are left
out of that k alone, and ``GroupScore.covered`` says how many problems each k counts, so a
reader sees when it is fewer than all (one unavailable sample of ten must not remove pass@10
from the table). How many samples were left out, and for want of which packages, is
reported beside the scores.

Infilling runs add exact match: the share of all samples (judged or not: no judge is needed)
whose middle is the canonical one (``geex.eval.infill``).

What users see (``geex.eval.code_checks``), of all samples too: the share whose program parses,
and the share that stays in the prompt's language, over the samples whose language could be
told. A blank sample (nothing but whitespace) counts as not parsing and is left out of the
stay share (``blank`` counts those); so is a sample with text but no token the identifier
knows, such as a bare number or prose in a script without Latin letters
(``language_undecided`` counts those).
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

    problems: int = 0  # problems with at least one sample, judged or not
    samples: int = 0  # all samples, "unavailable" ones included
    min_samples: int = 0  # the fewest samples drawn for any problem: the largest k reported
    pass_at: dict[int, float] = field(default_factory=dict)  # k -> mean pass@k
    verdicts: Counter = field(default_factory=Counter)
    judged: int = 0  # the samples pass@k is computed over
    missing_packages: Counter = field(default_factory=Counter)  # (package, install) -> samples
    covered: dict[int, int] = field(default_factory=dict)  # k -> problems pass@k averages
    exact_match: float | None = None  # infilling: the share of middles equal to the canonical
    parse_rate: float | None = None  # the share of samples whose program parses
    stay_rate: float | None = None  # the share of decided samples that stay in their language
    blank: int = 0  # samples of whitespace alone: not parsing, left out of the stay share
    language_undecided: int = 0  # samples with text whose language could not be told

    @property
    def unavailable(self) -> int:
        return self.samples - self.judged

    def partial(self, k: int) -> bool:
        """Whether pass@k leaves out problems with fewer than k judged samples."""
        return self.covered.get(k, self.problems) < self.problems

    def missing_package_list(self) -> list[dict]:
        """The packages that left samples unjudged, with their install commands, most first."""
        return [
            {"package": package, "install": install, "samples": n}
            for (package, install), n in self.missing_packages.most_common()
        ]

    def code_cells(self) -> list[str]:
        """The parse and stay shares in percent, for a table row; "-" where unknown."""
        return [f"{100 * rate:.1f}" if rate is not None else "-"
                for rate in (self.parse_rate, self.stay_rate)]  # fmt: skip

    def coverage(self, k: int) -> str:
        """ " (covered/problems)" where pass@k counts fewer than all problems, else ""."""
        return f" ({self.covered[k]}/{self.problems})" if self.partial(k) else ""


def score_group(results: Iterable[SampleResult], ks: Sequence[int] = DEFAULT_KS) -> GroupScore:
    results = list(results)
    drawn: Counter = Counter()
    per_task: dict[str, list[bool]] = defaultdict(list)
    verdicts: Counter = Counter()
    missing: Counter = Counter()
    for result in results:
        drawn[result.task_id] += 1
        verdicts[result.verdict] += 1
        if result.judged:
            per_task[result.task_id].append(result.passed)
        elif result.missing_package:
            missing[(result.missing_package, result.install)] += 1
    if not drawn:
        return GroupScore()
    min_n = min(drawn.values())
    counts = [(len(v), sum(v)) for v in per_task.values()]
    pass_at, covered = {}, {}
    for k in (k for k in ks if k <= min_n):
        scored = [pass_at_k(n, c, k) for n, c in counts if n >= k]
        covered[k] = len(scored)
        if scored:
            pass_at[k] = float(np.mean(scored))
    matches = [r.exact_match for r in results if r.exact_match is not None]
    exact_match = float(np.mean(matches)) if matches else None
    parsed = [r.parses for r in results if r.parses is not None]
    stayed = [r.stays_in_language for r in results if r.stays_in_language is not None]
    checked = [r for r in results if r.parses is not None]
    blank = sum(1 for r in checked if not r.generation.strip())
    undecided = sum(1 for r in checked if r.stays_in_language is None) - blank
    return GroupScore(
        problems=len(drawn),
        samples=sum(drawn.values()),
        min_samples=min_n,
        pass_at=pass_at,
        verdicts=verdicts,
        judged=sum(n for n, _ in counts),
        missing_packages=missing,
        covered=covered,
        exact_match=exact_match,
        parse_rate=float(np.mean(parsed)) if parsed else None,
        stay_rate=float(np.mean(stayed)) if stayed else None,
        blank=blank,
        language_undecided=undecided,
    )


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
