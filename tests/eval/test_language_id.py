"""The language identifier tells a completion that stays in its prompt's language from one
that wanders into another, with the accuracy its docstring states, measured on HumanEval-X.
Run: .venv/bin/python -m pytest tests/eval/test_language_id.py -q"""

from __future__ import annotations

import random
from collections import Counter

import pytest

from geex.eval.language_id import (
    LanguageIdentifier,
    embedded_identifier,
    identifier_for,
    line_tokens,
    training_texts,
)
from geex.eval.problems import load_embedded, load_problems
from tests.conftest import shared_path

HUMANEVALX_KEYS = ["python", "cpp", "java", "javascript", "go", "rust"]


@pytest.fixture(scope="module")
def humanevalx():
    return load_problems(shared_path("data", "humaneval-x"))


def _splice(problem, fragments, rng) -> str:
    """``problem``'s canonical solution with three lines of another solution inserted,
    indented as the body is: a completion that wandered into another language and back."""
    lines = problem.canonical_solution.rstrip("\n").split("\n")
    other = [line.strip() for line in rng.choice(fragments).canonical_solution.split("\n")]
    other = [line for line in other if line]
    start = rng.randrange(len(other))
    at = rng.randrange(1, len(lines) + 1)
    return "\n".join([*lines[:at], *("    " + x for x in other[start : start + 3]), *lines[at:]])


def test_held_out_accuracy_on_humanevalx(humanevalx):
    """Trained on the embedded set and the even-numbered problems, tested on the odd ones."""
    even = [p for p in humanevalx if int(p.number) % 2 == 0]
    odd = [p for p in humanevalx if int(p.number) % 2 == 1]
    identifier = identifier_for(even)
    left = Counter(p.language.key for p in odd
                   if identifier.stays(p.canonical_solution, p.language.key) is False)  # fmt: skip
    per_language = len(odd) // 6
    assert per_language == 82
    for key in HUMANEVALX_KEYS:
        assert left[key] <= 0.08 * per_language, (key, left[key])  # measured: 0 to 4 of 82
    assert sum(left.values()) <= 0.025 * len(odd)  # measured: 7 of 492

    rng = random.Random(0)
    python = [p for p in odd if p.language.key == "python"]
    for other_key, floor in (("go", 0.8), ("cpp", 0.9)):  # measured: 87% and 95%
        fragments = [p for p in odd if p.language.key == other_key]
        found = sum(identifier.stays(_splice(p, fragments, rng), "python") is False for p in python)
        assert found >= floor * len(python), (other_key, found)


def test_the_embedded_set_alone_tells_whole_programs_apart(humanevalx):
    """What ``geex run`` uses (no benchmark folder): the likeliest language of whole held-out
    programs, most of them right (measured: 823 of 984; JavaScript, whose embedded problems
    have no semicolons, the worst at 108 of 164), and few taken to leave their language
    (measured: 24 of 984, Rust 10, JavaScript 4)."""
    identifier = embedded_identifier()
    right = Counter(p.language.key for p in humanevalx
                    if identifier.identify(p.canonical_solution) == p.language.key)  # fmt: skip
    assert sum(right.values()) >= 0.8 * len(humanevalx)
    assert right["javascript"] >= 0.6 * len(humanevalx) / 6
    left = Counter(p.language.key for p in humanevalx
                   if identifier.stays(p.canonical_solution, p.language.key) is False)  # fmt: skip
    assert sum(left.values()) <= 0.04 * len(humanevalx)
    assert max(left.values()) <= 0.1 * len(humanevalx) / 6


def test_a_python_completion_that_turns_into_go_leaves_python():
    identifier = embedded_identifier()
    python = "    total = 0\n    for x in numbers:\n        total += x\n    return total\n"
    go = "    for i := 0; i < len(numbers); i++ {\n        total += numbers[i]\n    }\n"
    # Two C++ statements alone are too little since a line's shape leaves out its closing
    # semicolon (see the module docstring): a braced loop is not.
    cpp = (
        "    std::vector<int> out;\n    for (int i = 0; i < n; i++) {\n"
        "        out.push_back(numbers[i]);\n    }\n"
    )
    assert identifier.stays(python, "python") is True
    assert identifier.stays(python + go, "python") is False
    assert identifier.stays(python + cpp, "python") is False
    assert identifier.identify(go) == "go"


def test_a_blank_completion_is_undecided_and_a_short_ambiguous_one_stays():
    identifier = embedded_identifier()
    assert identifier.stays("", "python") is None
    assert identifier.stays("  \n\n", "go") is None
    assert identifier.stays("    return x;\n}\n", "java") is True
    assert identifier.stays("    return x\n", "python") is True


def test_held_out_embedded_canonical_solutions_stay():
    """Each embedded problem judged by an identifier trained without it (measured: 8 of 60
    taken to leave, at most 3 a language; 7, at most 2, before a window counted each of
    its features once)."""
    embedded = load_embedded()
    left = Counter()
    for problem in embedded:
        others = [p for p in embedded if p.task_id != problem.task_id]
        identifier = LanguageIdentifier.train(training_texts(others))
        if not identifier.stays(problem.canonical_solution, problem.language.key):
            left[problem.language.key] += 1
    assert sum(left.values()) <= 0.15 * len(embedded), left
    assert max(left.values(), default=0) <= 3, left


def test_comments_are_prose_and_preprocessor_lines_are_cpp():
    """Comment lines of any delimiter do not make a completion leave (a young model writes
    many); ``#include`` is C++, not a Python comment."""
    identifier = embedded_identifier()
    comments = "".join("    // the the the the\n" for _ in range(30))
    assert identifier.stays(comments, "java") is True
    assert identifier.stays(comments, "python") is True
    includes = "#include <vector>\n#include <string>\n#include <algorithm>\nusing namespace std;\n"
    assert identifier.identify(includes) == "cpp"
    assert identifier.stays("    x = 1\n" + includes, "python") is False


def test_a_python_comment_that_reads_like_a_directive_is_a_comment():
    """``# define ...`` and ``... # include ...`` are Python comments: a directive is ``#``
    at the start of a line with its name right after it."""
    assert line_tokens("    # define the base case") == ["COMMENT#"]
    assert line_tokens("x = a # include b") == ["NAME", "=", "NAME", "COMMENT#"]
    assert line_tokens("#include <vector>") == ["#include", "<", "NAME", ">"]
    assert line_tokens("  #define N 10") == ["#define", "NAME"]
    assert line_tokens("#if X > 1") == ["COMMENT#"]  # read as a comment: Python writes "#if x:"
    for line in ("#[derive(Debug)]", "#![allow(unused)]", "#!/usr/bin/env node", "#x = 1;"):
        assert line_tokens(line) == ["COMMENT#"], line  # Rust attributes, shebangs, JS fields


def test_preprocessor_lines_leave_every_language_but_cpp_and_python():
    """A young model answers a Rust signature with C headers. The embedded set's C++ has
    ``#include`` alone, so ``#ifndef`` and ``#define`` weigh nothing by the counts; only
    C++'s grammar has them, so they make a window leave any other language, except Python,
    where ``#`` opens a comment and such a line may be one."""
    identifier = embedded_identifier()
    header = "#ifndef _X_INT32\n#define _X_INT32 0x00\n#define _X_INT64 0x00\n#endif\n"
    body = {"rust": "    let x = 1;\n", "go": "\tx := 1\n", "java": "        int x = 1;\n",
            "javascript": "  const x = 1\n"}  # fmt: skip
    for key, code in body.items():
        assert identifier.stays(code, key) is True, key
        assert identifier.stays(code + header, key) is False, key
    assert identifier.stays("    int x = 1;\n" + header, "cpp") is True
    python = "    x = 1\n    #define the base case\n    return x\n"
    assert identifier.stays(python, "python") is True


def test_a_completion_that_loops_on_one_token_stays_in_its_language():
    """A young model's loop repeats a token until the length limit. Each feature of a window
    counts once, so a loop is one piece of evidence and does not outweigh the prompt's
    language (counted every time, each of these three was taken to leave, Go and Python for
    Java by over 100 nats)."""
    identifier = embedded_identifier()
    go = "\tif len(" + "f." * 60 + "f) > 0 {\n"
    python = "        self._file = self._file" + ".file" * 40 + "\n"
    javascript = "  if (text === 'a') {\n    return 'b'\n      ' ? " + "'string' : " * 30 + "\n"
    assert identifier.stays(go, "go") is True
    assert identifier.stays(python, "python") is True
    assert identifier.stays(javascript, "javascript") is True
    # Lines of another language's shape, repeated, still leave.
    loop = "    for (int i = 0; i < n; i++) {\n" * 8
    assert identifier.stays("    x = 1\n" + loop, "python") is False
