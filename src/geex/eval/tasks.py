"""What a model is asked: generation and translation tasks built from benchmark problems.

Generation (CodeGeeX's HumanEval-X layout): the language tag line, then the text that comes
before the body in the judged program: the problem's prompt, and for Rust the declaration
followed by the prompt (Rust's prompt holds only the doc comment; the harness puts it after the
signature, so the model continues inside the function).

Translation (CodeGeeX's ``translate_humaneval_x.py`` layout, no tag line)::

    code translation
    <Source>:
    <source declaration>
    <source canonical solution, right-stripped>
    <Target>:
    <target declaration>

The model writes the target body; it is judged against the target problem's tests.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from geex.errors import GeexError
from geex.eval.problems import Problem
from geex.languages import Language

TASK_KINDS = ("generation", "translation")


@dataclass(frozen=True)
class Task:
    """One prompt to complete and the problem whose tests judge the completion."""

    task_id: str  # "CPP/12", or "Python-to-CPP/12" for a translation
    problem: Problem  # the problem the completion is judged against
    prompt: str  # the full model input
    source: Problem | None = None  # translation only: the problem translated from

    @property
    def language(self) -> Language:
        return self.problem.language

    @property
    def group(self) -> str:
        """What scores are reported by: the language, or the source -> target pair."""
        if self.source is None:
            return self.language.name
        return f"{self.source.language.name} -> {self.language.name}"

    def program_completion(self, generation: str) -> str:
        """What goes after the prompt in the judged program: the generation itself here; an
        infilling task puts it between the canonical text around its hole."""
        return generation

    def exact_match(self, generation: str) -> bool | None:
        """Whether ``generation`` is the expected text; None where no one text is expected."""
        return None


def generation_prompt(problem: Problem, *, tag: bool = True) -> str:
    body = problem.prompt
    if problem.language.key == "rust":
        body = problem.declaration + problem.prompt
    return f"{problem.language.tag}\n{body}" if tag else body


def translation_prompt(source: Problem, target: Problem) -> str:
    source_code = f"{source.declaration}\n{source.canonical_solution.rstrip()}"
    return code_translation_prompt(
        source.language, source_code, target.language, target.declaration
    )


def code_translation_prompt(
    source_language: Language, source_code: str, target_language: Language, target_start: str = ""
) -> str:
    """CodeGeeX's translation layout for any code: the benchmark's tasks and the server's
    ``translate`` task share it, so a model is asked the way it was evaluated."""
    return (
        "code translation\n"
        f"{source_language.name}:\n"
        f"{source_code}\n"
        f"{target_language.name}:\n"
        f"{target_start}"
    )


def generation_tasks(problems: Iterable[Problem], *, tag: bool = True) -> list[Task]:
    return [Task(p.task_id, p, generation_prompt(p, tag=tag)) for p in problems]


def translation_tasks(
    problems: Sequence[Problem],
    sources: Iterable[str] | None = None,
    targets: Iterable[str] | None = None,
) -> list[Task]:
    """A task for every (source, target) pair of different languages and every problem
    number both have. ``sources``/``targets`` hold language keys; all languages by default."""
    by_language: dict[str, dict[str, Problem]] = {}
    for problem in problems:
        by_language.setdefault(problem.language.key, {})[problem.number] = problem
    source_keys = list(sources) if sources is not None else list(by_language)
    target_keys = list(targets) if targets is not None else list(by_language)
    tasks = []
    for src in source_keys:
        for tgt in target_keys:
            if src == tgt or src not in by_language or tgt not in by_language:
                continue
            for number, target in by_language[tgt].items():
                source = by_language[src].get(number)
                if source is None:
                    continue
                task_id = f"{source.prefix}-to-{target.prefix}/{number}"
                tasks.append(Task(task_id, target, translation_prompt(source, target), source))
    if not tasks:
        raise GeexError("translation needs problems in at least two languages")
    return tasks


def build_tasks(problems: Sequence[Problem], kind: str) -> list[Task]:
    if kind == "generation":
        return generation_tasks(problems)
    if kind == "translation":
        return translation_tasks(problems)
    raise GeexError(f"unknown task {kind!r}; choose {' or '.join(TASK_KINDS)}")
