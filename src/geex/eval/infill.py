"""Infilling tasks: lines of a canonical solution masked, for a model to fill from both sides.

As in the single-line infilling benchmark of InCoder (Fried et al., 2022) and SantaCoder
(Allal et al., 2023), every non-blank line of a problem's canonical body is masked in turn
(**single-line**); **multi-line** tasks mask a span of 2 to ``max_span`` consecutive
non-blank lines (blank lines between them go with the span). A problem has many spans, so at
most ``multi_per_problem`` are kept, picked by a hash of the task id: the same ones on every
run and machine, spread over the body rather than bunched at its start.

The hole is split from its surroundings as an editor sees it with the cursor on a fresh line:

- the **prefix** is the generation prompt (tag line, prompt; Rust's declaration first) and
  the body up to the hole, *with the first masked line's indentation*: the cursor sits after
  the indentation an editor puts there, so a model is judged on the code, not on counting
  spaces (and Python's block structure cannot be broken by the first line's indent);
- the **suffix** is the rest of the canonical body (Java's closing ``}`` of the class too);
  the tests are not shown, as in InCoder's and SantaCoder's tasks;
- the **middle** is the masked text after that indentation, up to and including its last
  newline (the body's last line may have none: Java's bodies end without one).

A model's middle is made whole the same way for both kinds: cut at its first newline for a
single line, then ended with a newline exactly where the canonical middle ends with one
(``whole_middle``). The judged program is the prompt, ``prefix + middle + suffix`` of the
body, and the tests, laid out as for generation (``geex.eval.programs.assemble``).

Exact match compares the middle with the canonical one after stripping trailing whitespace
from each line and blank lines from the end.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from geex.errors import GeexError
from geex.eval.backends import HoleRules, Sample, StopRule
from geex.eval.problems import Problem
from geex.eval.tasks import Task, generation_prompt

INFILL_KINDS = ("single-line", "multi-line")
DEFAULT_MAX_SPAN = 4  # lines of the longest multi-line hole
DEFAULT_MULTI_PER_PROBLEM = 5


@dataclass(frozen=True)
class InfillTask(Task):
    """A hole in a problem's canonical body; ``prompt`` is the prefix the model reads."""

    kind: str = "single-line"
    body_before: str = ""  # the canonical body before the hole, with its first line's indent
    middle: str = ""  # the canonical text of the hole
    suffix: str = ""  # the canonical body after the hole

    @property
    def group(self) -> str:
        return f"{self.language.name} {self.kind}"

    def program_completion(self, generation: str) -> str:
        return self.body_before + generation + self.suffix

    def exact_match(self, generation: str) -> bool:
        return _normalized(generation) == _normalized(self.middle)


def _normalized(text: str) -> str:
    return "\n".join(line.rstrip() for line in text.rstrip().split("\n"))


def infill_tasks(
    problems: Iterable[Problem],
    kinds: Sequence[str] = INFILL_KINDS,
    *,
    max_span: int = DEFAULT_MAX_SPAN,
    multi_per_problem: int = DEFAULT_MULTI_PER_PROBLEM,
) -> list[InfillTask]:
    """The tasks of ``problems``, by language, then kind, then problem and position.

    Task ids extend the problem's with the masked lines of its canonical body, numbered from
    1: ``Python/0/L3`` (single-line), ``Python/0/L3-5`` (multi-line).
    """
    unknown = [kind for kind in kinds if kind not in INFILL_KINDS]
    if unknown or not kinds:
        raise GeexError(f"unknown infilling kind {unknown}; choose from {', '.join(INFILL_KINDS)}")
    if max_span < 2:
        raise GeexError(f"--max-span must be at least 2 lines, got {max_span}")
    if multi_per_problem < 1:
        raise GeexError(f"--multi-per-problem must be at least 1, got {multi_per_problem}")
    by_language: dict[str, list[Problem]] = {}
    for problem in problems:
        by_language.setdefault(problem.language.key, []).append(problem)
    tasks: list[InfillTask] = []
    for language_problems in by_language.values():
        for kind in INFILL_KINDS:
            if kind not in kinds:
                continue
            for problem in language_problems:
                if kind == "single-line":
                    tasks += _single_line(problem)
                else:
                    tasks += _multi_line(problem, max_span, multi_per_problem)
    if not tasks:
        raise GeexError("the problems' canonical solutions have no lines to mask")
    return tasks


def _lines(problem: Problem) -> list[str]:
    """The canonical body's lines, each with its newline (the last one may lack it)."""
    return problem.canonical_solution.splitlines(keepends=True)


def _hole(problem: Problem, kind: str, lines: list[str], first: int, last: int) -> InfillTask:
    """The task masking ``lines[first..last]`` (0-based, inclusive)."""
    masked = "".join(lines[first : last + 1])
    indent = masked[: len(masked) - len(masked.lstrip(" \t"))]
    before = "".join(lines[:first]) + indent
    span = f"L{first + 1}" if first == last else f"L{first + 1}-{last + 1}"
    return InfillTask(
        task_id=f"{problem.task_id}/{span}",
        problem=problem,
        prompt=generation_prompt(problem) + before,
        kind=kind,
        body_before=before,
        middle=masked[len(indent) :],
        suffix="".join(lines[last + 1 :]),
    )


def _single_line(problem: Problem) -> list[InfillTask]:
    lines = _lines(problem)
    return [_hole(problem, "single-line", lines, i, i) for i, t in enumerate(lines) if t.strip()]


def _multi_line(problem: Problem, max_span: int, per_problem: int) -> list[InfillTask]:
    lines = _lines(problem)
    code = [i for i, text in enumerate(lines) if text.strip()]
    spans = [
        (code[start], code[start + count - 1])
        for start in range(len(code))
        for count in range(2, max_span + 1)
        if start + count <= len(code)
    ]
    tasks = [_hole(problem, "multi-line", lines, first, last) for first, last in spans]
    kept = sorted(tasks, key=lambda t: hashlib.sha256(t.task_id.encode()).digest())[:per_problem]
    return sorted(kept, key=lambda t: [int(x) for x in t.task_id.rsplit("L", 1)[1].split("-")])


def infill_stop(task: InfillTask) -> StopRule:
    """A single line ends at its newline; a span at the model's end token (the backend's) or
    at what cannot occur inside a function body (the language's stop sequences; for Python,
    a line at column 0)."""
    if task.kind == "single-line":
        return StopRule(("\n",), column_zero=False, closing_brace=False)
    python = task.language.key == "python"
    return StopRule(task.language.stop_sequences, column_zero=python, closing_brace=False)


def whole_middle(task: InfillTask, text: str) -> str:
    """A model's middle made whole: one line for a single-line hole, ending with a newline
    exactly where the canonical middle does."""
    if task.kind == "single-line":
        text = text.split("\n", 1)[0]
    ending = "\n" if task.middle.endswith("\n") else ""
    return text.removesuffix("\n") + ending


# What generate_samples needs to ask a model for these holes.
INFILL_RULES = HoleRules(stop_rule=infill_stop, finish=whole_middle)


def canonical_infills(tasks: Sequence[InfillTask]) -> list[Sample]:
    """Each hole filled with its canonical middle: every program is the canonical solution's,
    so each task must get its problem's canonical verdict."""
    return [Sample(task, 0, task.middle) for task in tasks]
