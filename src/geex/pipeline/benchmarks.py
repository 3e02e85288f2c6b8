"""The benchmarks a ``geex run`` evaluates on, and their problems: judged by the eval stage,
counted by the train stage to keep back time for them."""

from __future__ import annotations

from geex.eval.problems import load_embedded, load_problems
from geex.pipeline.config import EvalSettings

TITLES = {"embedded": "Geex embedded set", "humanevalx": "HumanEval-X"}


def benchmarks(settings: EvalSettings) -> list[str]:
    names = ["embedded"] if settings.embedded else []
    return names + (["humanevalx"] if settings.humanevalx else [])


def problems(settings: EvalSettings, benchmark: str, missing: dict[str, str]) -> list:
    """The problems of ``benchmark`` in the evaluated languages that can be judged here."""
    languages = [key for key in settings.languages if key not in missing]
    if not languages:
        return []
    if benchmark == "embedded":
        found = load_embedded(languages)
    else:
        found = load_problems(settings.humanevalx, languages)
    if settings.limit is not None:
        found = [p for p in found if int(p.number) < settings.limit]
    return found


def problem_count(settings: EvalSettings, missing: dict[str, str]) -> int:
    return sum(len(problems(settings, b, missing)) for b in benchmarks(settings))
