"""Infilling tasks mask every non-blank canonical line and capped spans of lines, and put the
hole back exactly; a model's middle is made whole and matched as documented.
Run: .venv/bin/python -m pytest tests/eval/test_infill_tasks.py -q"""

from __future__ import annotations

import pytest

from geex.errors import GeexError
from geex.eval.infill import infill_stop, infill_tasks, whole_middle
from geex.eval.problems import load_embedded
from geex.eval.tasks import generation_prompt

PROBLEMS = load_embedded()


def test_every_hole_puts_the_canonical_body_back():
    for task in infill_tasks(PROBLEMS):
        body = task.problem.canonical_solution
        assert task.program_completion(task.middle) == body, task.task_id
        assert task.prompt == generation_prompt(task.problem) + task.body_before
        assert task.exact_match(task.middle)


def test_single_line_holes_are_the_non_blank_lines_with_their_indent_in_the_prefix():
    problem = next(p for p in PROBLEMS if p.language.key == "python")
    tasks = infill_tasks([problem], ["single-line"])
    lines = problem.canonical_solution.splitlines(keepends=True)
    code = [i for i, line in enumerate(lines) if line.strip()]
    assert [t.task_id for t in tasks] == [f"{problem.task_id}/L{i + 1}" for i in code]
    for task, i in zip(tasks, code, strict=True):
        indent = lines[i][: len(lines[i]) - len(lines[i].lstrip())]
        assert task.body_before.endswith("\n" + indent) or task.body_before == indent
        assert task.middle == lines[i].lstrip(" \t")
        assert task.group == "Python single-line"


def test_multi_line_holes_are_capped_spread_and_the_same_on_every_run():
    problems = [p for p in PROBLEMS if p.language.key == "java"]
    first = infill_tasks(problems, ["multi-line"], max_span=3, multi_per_problem=2)
    again = infill_tasks(problems, ["multi-line"], max_span=3, multi_per_problem=2)
    assert [t.task_id for t in first] == [t.task_id for t in again]
    per_problem: dict[str, int] = {}
    for task in first:
        per_problem[task.problem.task_id] = per_problem.get(task.problem.task_id, 0) + 1
        masked = [line for line in task.middle.splitlines() if line.strip()]
        assert 2 <= len(masked) <= 3, task.task_id
        assert task.kind == "multi-line" and task.group == "Java multi-line"
    assert set(per_problem.values()) == {2}
    starts = {t.task_id.rsplit("L", 1)[1].split("-")[0] for t in first}
    assert len(starts) > 2  # not every kept span starts at the body's first line


def test_tasks_come_by_language_then_kind():
    groups = list(dict.fromkeys(t.group for t in infill_tasks(PROBLEMS)))
    assert groups[:4] == ["Python single-line", "Python multi-line", "C++ single-line",
                          "C++ multi-line"]  # fmt: skip
    assert len(groups) == 12


@pytest.mark.parametrize(
    ("flags", "says"),
    [
        ({"kinds": ["whole-file"]}, "unknown infilling kind"),
        ({"max_span": 1}, "--max-span must be at least 2"),
        ({"multi_per_problem": 0}, "--multi-per-problem must be at least 1"),
    ],
)
def test_bad_settings_are_refused(flags, says):
    with pytest.raises(GeexError, match=says):
        infill_tasks(PROBLEMS, **flags)


def test_a_middle_is_one_line_for_a_single_line_hole_and_ends_as_the_canonical_one():
    tasks = infill_tasks(PROBLEMS)
    single = next(t for t in tasks if t.kind == "single-line" and t.middle.endswith("\n"))
    assert whole_middle(single, "x = 1\ny = 2\n") == "x = 1\n"
    assert whole_middle(single, "x = 1") == "x = 1\n"
    multi = next(t for t in tasks if t.kind == "multi-line")
    assert whole_middle(multi, "a\nb") == "a\nb\n"
    assert whole_middle(multi, "a\nb\n") == "a\nb\n"
    java_last = next(t for t in tasks if t.language.key == "java" and not t.middle.endswith("\n"))
    assert whole_middle(java_last, "}\n") == "}"


def test_exact_match_ignores_trailing_whitespace_only():
    task = next(t for t in infill_tasks(PROBLEMS) if t.kind == "multi-line")
    first, rest = task.middle.split("\n", 1)
    assert task.exact_match(first + "  \t\n" + rest + "\n\n")
    assert not task.exact_match(" " + task.middle)
    assert not task.exact_match(first + "\n")


def test_a_single_line_stops_at_its_newline_a_span_where_a_body_cannot_go_on():
    tasks = infill_tasks([p for p in PROBLEMS if p.language.key == "python"])
    single = next(t for t in tasks if t.kind == "single-line")
    multi = next(t for t in tasks if t.kind == "multi-line")
    assert infill_stop(single).end("return x\n    y") == len("return x")
    assert infill_stop(multi).end("a\n    b\nprint(1)") == len("a\n    b")
    assert infill_stop(multi).end("a\n    b\n") is None


def test_every_humanevalx_hole_puts_its_body_back(humanevalx_dir):
    from geex.eval.problems import load_problems

    tasks = infill_tasks(load_problems(humanevalx_dir))
    for task in tasks:
        assert task.program_completion(task.middle) == task.problem.canonical_solution
    kinds = {(t.language.key, t.kind) for t in tasks}
    assert len(kinds) == 12


def test_a_bad_setting_is_a_one_line_error_of_the_command(capsys):
    from geex.cli import main

    code = main(["eval", "infill", "--embedded", "--canonical", "--max-span", "1"])
    assert code != 0
    err = capsys.readouterr().err.strip()
    assert "--max-span must be at least 2 lines" in err and len(err.splitlines()) == 1
