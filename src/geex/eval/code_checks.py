"""What users see of a sample, beside its verdict: does its program parse, and does it stay in
its prompt's language? (:mod:`geex.eval.parse_check`, :mod:`geex.eval.language_id`.)

Both are computed when a sample is judged and stored in ``results.jsonl`` with the version of
the checks that made them (:attr:`CodeChecks.version`: the features' format and the
identifier's training counts); a run that resumes re-marks every stored result of another
version, so one report never mixes the verdicts of two identifiers. Neither enters a
fingerprint: they do not change a verdict.
"""

from __future__ import annotations

from collections.abc import Iterable

from geex.eval.language_id import LanguageIdentifier, embedded_identifier, identifier_for
from geex.eval.parse_check import GRAMMARS, completion_parses, parses
from geex.eval.programs import cut_generation
from geex.eval.results import SampleResult
from geex.eval.tasks import Task
from geex.languages import get_language

# The parse check's rule, part of the checks' version: results marked under another rule are
# marked again. 2: a completion of comments or punctuation alone wrote no code. 3: a Python
# block without a statement does not parse (tree-sitter-python accepts it; Python does not).
PARSE_RULE = "parse-rule-3"


class CodeChecks:
    """Checks the samples of a set of tasks; the language identifier is trained once, on the
    embedded set and the tasks' problems."""

    def __init__(self, tasks: Iterable[Task]) -> None:
        tasks = list(tasks)
        self.tasks = {task.task_id: task for task in tasks}
        self.identifier: LanguageIdentifier = identifier_for(task.problem for task in tasks)
        self.version = f"{PARSE_RULE}:{self.identifier.fingerprint()}"

    def mark(self, result: SampleResult) -> None:
        """Fill ``result.parses`` and ``result.stays_in_language``."""
        task = self.tasks[result.task_id]
        language = task.language.key
        if language not in GRAMMARS:
            return
        result.checks_version = self.version
        if not result.generation.strip():
            result.parses = False
            result.stays_in_language = None
            return
        result.parses = completion_parses(task.problem, task.program_completion(result.generation))
        result.stays_in_language = self.identifier.stays(result.generation, language)

    def mark_missing(self, results: Iterable[SampleResult]) -> None:
        """Mark the results that lack the checks (lines written before they existed) or hold
        those of another version of them."""
        for result in results:
            if result.parses is None or result.checks_version != self.version:
                self.mark(result)


def check_completion(prompt: str, completion: str, language_key: str) -> dict:
    """The checks of a completion of a free prompt (no benchmark problem, as ``geex run``'s
    samples): the prompt and the completion cut by the evaluation's stop rules (a Java method
    closed, then the class its prompt opened) parse; the completion stays, by the identifier
    trained on the embedded set, judged on the whole completion, as the reader sees it.
    ``{"parses": bool, "stays_in_language": bool | None}``."""
    language = get_language(language_key)
    cut = cut_generation(completion, language)
    return {
        "parses": bool(cut.strip()) and parses(prompt + cut, language_key, code_from=len(prompt)),
        "stays_in_language": embedded_identifier().stays(completion, language_key),
    }
