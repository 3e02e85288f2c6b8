"""Proof that the judge itself works, before and while it judges.

When the machine's sandbox breaks (a path it binds is gone, /dev/null is not writable, the
sandbox cannot start), every program fails and the model would be blamed for the machine. So
each language is checked with a known-good program, the canonical solution of the first
problem of Geex's embedded set, which must pass:

- before anything is judged;
- whenever a language has ``check_after`` results in a row without a pass since its last
  proof (a pass proves the harness ran a program to success; a run of failures may be the
  harness failing).

A verdict is released (and so written to ``results.jsonl``) only once a later pass or
check of its language vouches for the harness. A failed check raises :class:`HarnessError`
and the verdicts not yet vouched for are dropped: a rerun judges them again.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator

from geex.errors import GeexError
from geex.eval.backends import Sample
from geex.eval.problems import load_embedded
from geex.eval.results import SampleResult
from geex.eval.tasks import generation_tasks
from geex.eval.verdicts import PASSED, UNAVAILABLE

CHECK_AFTER = 8  # results in a row without a pass before the harness is checked


class HarnessError(GeexError):
    """The judge, not the program, failed: the sandbox or a toolchain is broken here."""


@functools.cache
def known_good_sample(language_key: str) -> Sample | None:
    """A program of ``language_key`` that passes on a working harness, or None if Geex's
    embedded set has no problem in that language."""
    for task in generation_tasks(load_embedded(), tag=False):
        if task.language.key == language_key:
            return Sample(task, 0, task.problem.canonical_solution)
    return None


def check_harness(evaluator, language_keys: Iterable[str]) -> None:
    """Judge a known-good program of each language; raise :class:`HarnessError` naming the
    first that does not pass. Languages whose toolchain is missing are skipped: their samples
    are "unavailable" anyway."""
    samples = []
    for key in sorted(set(language_keys)):
        sample = known_good_sample(key)
        if sample is not None and evaluator.runner(key).missing() is None:
            samples.append(sample)
    for result in evaluator.judge(samples):
        if result.passed or (result.verdict == UNAVAILABLE and result.missing_package):
            continue  # a missing package is named on every sample it concerns
        raise HarnessError(_failure(result))


def _failure(result: SampleResult) -> str:
    said = " ".join(result.stderr.split())
    said = said if len(said) <= 300 else said[:300] + "..."
    return (
        f"the judge does not work here: a known-good {result.group} program (the canonical "
        f"solution of {result.task_id}) was judged {result.verdict!r}"
        + (f" ({result.detail})" if result.detail else "")
        + (f": {said}" if said else "")
        + f"; sandbox mode {result.sandbox or '?'}. No verdict was recorded since the last good "
        "check; fix the sandbox or toolchain (`geex eval prepare` checks them) and run again"
    )


class HarnessWatch:
    """Holds judged results back until the harness is proven to have worked after them."""

    def __init__(self, evaluator, check_after: int = CHECK_AFTER) -> None:
        self.evaluator = evaluator
        self.check_after = check_after
        self._unvouched: dict[str, list[SampleResult]] = {}

    def checked_first(
        self, samples: Iterable[Sample], language_keys: Iterable[str]
    ) -> Iterator[Sample]:
        """``samples``, with the harness checked before the first is handed out (a run with
        nothing left to judge checks nothing)."""
        samples = iter(samples)
        first = next(samples, None)
        if first is None:
            return
        check_harness(self.evaluator, language_keys)
        yield first
        yield from samples

    def add(self, result: SampleResult) -> list[SampleResult]:
        """The results this one releases (itself and those held before it), maybe none."""
        held = self._unvouched.setdefault(result.language, [])
        held.append(result)
        if result.verdict != PASSED and len(held) < self.check_after:
            return []
        if result.verdict != PASSED:
            check_harness(self.evaluator, [result.language])
        return self._unvouched.pop(result.language)

    def finish(self) -> list[SampleResult]:
        """Check every language with results held back, and release them."""
        check_harness(self.evaluator, [key for key, held in self._unvouched.items() if held])
        released = [r for held in self._unvouched.values() for r in held]
        self._unvouched.clear()
        return released
