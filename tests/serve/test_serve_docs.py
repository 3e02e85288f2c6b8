"""docs/serve.md keeps up with the code: every `geex serve` flag has a row in its options
table, and every `geex task` verb (each one of the server's tasks) a row in its tasks table.

`pytest tests/serve/test_serve_docs.py`
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from geex.cli import build_parser
from geex.serve.tasks import task_class

DOC = Path(__file__).resolve().parents[2] / "docs" / "serve.md"


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices
    raise AssertionError(f"{parser.prog} has no subcommands")


def _section(title: str) -> str:
    """The text of the ``## title`` section of the page."""
    text = DOC.read_text(encoding="utf-8")
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end >= 0 else len(text)]


def _first_cells(section: str) -> list[str]:
    return [line.split("|")[1] for line in section.splitlines() if line.startswith("| ")]


def test_every_geex_serve_flag_has_a_row_in_the_options_table():
    serve = _subcommands(build_parser())["serve"]
    flags = {
        option
        for action in serve._actions
        for option in action.option_strings
        if option.startswith("--") and option != "--help"
    }
    cells = _first_cells(_section("Security and limits"))
    documented = {flag for cell in cells for flag in re.findall(r"`(--[a-z-]+)", cell)}
    assert flags - documented == set(), "flags missing from docs/serve.md's options table"
    assert documented - flags == set(), "docs/serve.md's options table lists unknown flags"


def test_every_task_verb_has_a_row_in_the_tasks_table():
    verbs = set(_subcommands(_subcommands(build_parser())["task"]))
    for verb in verbs:
        assert task_class(verb).name == verb  # each verb is one of the server's tasks
    cells = _first_cells(_section("Tasks"))
    documented = {m.group(1) for cell in cells if (m := re.fullmatch(r" `([a-z-]+)` ", cell))}
    assert verbs == documented, "docs/serve.md's tasks table and geex task's verbs differ"
