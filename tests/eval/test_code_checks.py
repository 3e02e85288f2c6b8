"""geex eval stores per sample whether its program parses and whether it stays in its prompt's
language, and reports both shares per language; results of older runs get them on resume.
Run: .venv/bin/python -m pytest tests/eval/test_code_checks.py -q"""

from __future__ import annotations

import json

from geex.eval.backends import Sample
from geex.eval.code_checks import check_completion
from geex.eval.problems import load_embedded
from geex.eval.report import markdown
from geex.eval.run import evaluate
from geex.eval.tasks import generation_tasks

# Problem 0 of the embedded Python set, run-length encoding, written three ways.
IN_PYTHON = (
    "    out = []\n    i = 0\n    while i < len(text):\n        j = i\n"
    "        while j < len(text) and text[j] == text[i]:\n            j += 1\n"
    "        out.append(text[i] + str(j - i))\n        i = j\n    return ''.join(out)\n"
)
INTO_GO = (
    '    out := ""\n    for i := 0; i < len(text); i++ {\n'
    "        out += string(text[i]) + strconv.Itoa(1)\n    }\n    return out\n"
)


def _samples():
    (task,) = [t for t in generation_tasks(load_embedded(["python"])) if t.task_id.endswith("/0")]
    # A blank sample, and one with text but no token that tells a language.
    texts = [IN_PYTHON, INTO_GO, "   \n", "    42\n"]
    return [task], [Sample(task, i, text) for i, text in enumerate(texts)]


def test_shares_of_samples_that_parse_and_stay(evaluator, tmp_path):
    tasks, samples = _samples()
    run = evaluate(evaluator, tasks, samples, generator={"samples": "inline"}, out_dir=tmp_path)
    marks = [(r.verdict, r.parses, r.stays_in_language) for r in run.results]
    assert marks == [
        ("passed", True, True),
        ("compile error", False, False),
        ("failed", False, None),
        ("failed", True, None),
    ]
    python = run.scores.groups["Python"]
    assert (python.parse_rate, python.stay_rate) == (0.5, 0.5)
    assert (python.blank, python.language_undecided) == (1, 1)

    summary = json.loads((tmp_path / "summary.json").read_text())["groups"]["Python"]
    assert summary["parses"] == 0.5
    assert summary["stays_in_language"] == 0.5
    assert (summary["blank"], summary["language_undecided"]) == (1, 1)
    assert "| Python | 1 | 4 | 25.00 | 50.0 | 50.0 |" in markdown(run)
    report = (tmp_path / "report.md").read_text()
    assert "1 blank sample(s) count as not parsing and are left out of stays" in report
    assert "1 sample(s) whose language could not be told" in report
    assert "parses %" in (tmp_path / "report.html").read_text()


def test_results_of_an_older_run_get_the_checks_on_resume(evaluator, tmp_path):
    tasks, samples = _samples()
    evaluate(evaluator, tasks, samples, generator={"samples": "inline"}, out_dir=tmp_path)
    results = tmp_path / "results.jsonl"
    older = []
    for line in results.read_text().splitlines():
        record = json.loads(line)
        del record["parses"], record["stays_in_language"]
        older.append(json.dumps(record))
    results.write_text("\n".join(older) + "\n")

    run = evaluate(evaluator, tasks, samples, generator={"samples": "inline"}, out_dir=tmp_path)
    assert run.resumed == 4
    assert [r.parses for r in run.results] == [True, False, False, True]
    stored = [json.loads(line) for line in results.read_text().splitlines()]
    assert [r["stays_in_language"] for r in stored] == [True, False, None, None]


def test_results_marked_by_another_version_of_the_checks_are_marked_again(evaluator, tmp_path):
    """A stored verdict of an identifier with other features or training is not kept: every
    result of a report is marked by the same checks."""
    tasks, samples = _samples()
    evaluate(evaluator, tasks, samples, generator={"samples": "inline"}, out_dir=tmp_path)
    results = tmp_path / "results.jsonl"
    stored = [json.loads(line) for line in results.read_text().splitlines()]
    version = stored[0]["checks_version"]
    assert version and all(r["checks_version"] == version for r in stored[:2])
    stale = [{**r, "stays_in_language": not r["stays_in_language"], "checks_version": "old"}
             for r in stored[:2]]  # fmt: skip
    results.write_text("".join(json.dumps(r) + "\n" for r in [*stale, *stored[2:]]))

    run = evaluate(evaluator, tasks, samples, generator={"samples": "inline"}, out_dir=tmp_path)
    assert run.resumed == 4
    assert [r.stays_in_language for r in run.results[:2]] == [True, False]
    assert {r.checks_version for r in run.results} == {version}


def test_a_free_prompts_completion_is_checked_as_geex_run_samples_it():
    java = "public class Main {\n    public static int max(int a, int b) {\n"
    closed = "        return a > b ? a : b;\n    }\n\n    public static void main"
    assert check_completion(java, closed, "java") == {"parses": True, "stays_in_language": True}
    rust = "fn factorial(n: u64) -> u64 {\n"
    wandered = "    def f(x):\n        return x\n"
    assert check_completion(rust, wandered, "rust") == {
        "parses": False,
        "stays_in_language": False,
    }
    assert check_completion(rust, "", "rust") == {"parses": False, "stays_in_language": None}
    # Python's stop rule ends the body at the unindented line: nothing is left to parse, but
    # the reader sees Go.
    python = "def reverse(s):\n"
    go = "for i := 0; i < len(s); i++ {\n    out += string(s[i])\n}\n"
    assert check_completion(python, go, "python") == {
        "parses": False,
        "stays_in_language": False,
    }
