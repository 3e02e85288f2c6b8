"""Generation prompts carry the language tag; translation prompts follow CodeGeeX's layout for
every source -> target pair. Run: .venv/bin/python -m pytest tests/eval/test_tasks.py -q"""

from __future__ import annotations

import pytest

from geex.errors import GeexError
from geex.eval.problems import load_embedded, load_problems
from geex.eval.tasks import build_tasks, generation_tasks, translation_tasks


def test_generation_prompt_is_tag_line_then_prompt():
    problems = load_embedded(["python", "cpp", "rust"])
    tasks = {t.task_id: t for t in generation_tasks(problems)}
    python = tasks["Geex-Python/0"]
    assert python.prompt == "# language: Python\n" + python.problem.prompt
    assert tasks["Geex-CPP/0"].prompt.startswith("// language: C++\n/*")
    # Rust's prompt is only the doc comment; the model continues after the signature.
    rust = tasks["Geex-Rust/0"]
    assert rust.prompt == "// language: Rust\n" + rust.problem.declaration + rust.problem.prompt


def test_translation_prompt_layout():
    problems = load_embedded(["python", "go"])
    task = next(t for t in translation_tasks(problems) if t.task_id == "Geex-Python-to-Geex-Go/3")
    src = task.source
    assert task.prompt == (
        "code translation\nPython:\n" + src.declaration + "\n" + src.canonical_solution.rstrip()
        + "\nGo:\n" + task.problem.declaration
    )  # fmt: skip
    assert task.language.key == "go" and task.group == "Python -> Go"


def test_every_ordered_pair_of_languages():
    tasks = build_tasks(load_embedded(), "translation")
    pairs = {t.group for t in tasks}
    assert len(pairs) == 6 * 5
    assert len(tasks) == 6 * 5 * 10


def test_translation_needs_two_languages():
    with pytest.raises(GeexError):
        build_tasks(load_embedded(["python"]), "translation")


def test_humanevalx_translation_uses_the_source_declaration_and_solution(humanevalx_dir):
    problems = load_problems(humanevalx_dir, ["cpp", "js"])
    task = next(t for t in translation_tasks(problems) if t.task_id == "CPP-to-JavaScript/0")
    assert task.prompt.startswith("code translation\nC++:\n#include<stdio.h>")
    assert task.prompt.endswith(
        "JavaScript:\n\nconst hasCloseElements = (numbers, threshold) => {\n"
    )
