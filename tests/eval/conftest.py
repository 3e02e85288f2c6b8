"""Fixtures of the evaluation tests: an evaluator, and tasks made from inline programs."""

from __future__ import annotations

import pytest

from geex.eval.backends import Sample
from geex.eval.evaluator import EvalConfig, Evaluator
from geex.eval.problems import Problem, humanevalx_language
from geex.eval.runners import RunSettings
from geex.eval.tasks import Task


@pytest.fixture(scope="module")
def evaluator():
    """One evaluator per test module: 2 workers, 5 s per program, the shared warm caches."""
    with Evaluator(EvalConfig(workers=2, settings=RunSettings(timeout=5.0))) as ev:
        yield ev


def inline_sample(
    language: str,
    prompt: str,
    completion: str = "",
    test: str = "",
    *,
    task_id: str | None = None,
    declaration: str = "",
    **extra,
) -> Sample:
    """A sample whose assembled program is ``prompt + completion + test`` in the reference
    layout of ``language`` (a HumanEval-X id or name)."""
    lang = humanevalx_language(language)
    problem = Problem(
        task_id=task_id or f"Inline-{lang.key}/0",
        language=lang,
        prompt=prompt,
        declaration=declaration,
        canonical_solution=completion,
        test=test,
        extra=extra,
    )
    return Sample(Task(problem.task_id, problem, prompt), 0, completion)
