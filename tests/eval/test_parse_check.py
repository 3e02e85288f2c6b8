"""Every canonical solution of HumanEval-X and of the embedded set parses with tree-sitter in
its language, and programs broken on purpose do not.
Run: .venv/bin/python -m pytest tests/eval/test_parse_check.py -q"""

from __future__ import annotations

import pytest

from geex.errors import GeexError
from geex.eval.parse_check import completion_parses, parses
from geex.eval.problems import load_embedded, load_problems


def test_every_canonical_solution_parses(humanevalx_dir):
    problems = load_problems(humanevalx_dir) + load_embedded()
    failing = [p.task_id for p in problems if not completion_parses(p, p.canonical_solution)]
    assert len(problems) == 6 * (164 + 10)
    assert failing == []


def _cut_in_half(text: str) -> str:
    return text[: len(text) // 2]


@pytest.mark.parametrize("language", ["python", "cpp", "java", "javascript", "go", "rust"])
def test_a_completion_stopped_midway_does_not_parse(language):
    """A body cut in half leaves a block or a call open: the program has a MISSING or an
    ERROR node (HumanEval-X's problem 0 of each language has a nested loop)."""
    (problem,) = [p for p in load_embedded([language]) if p.number == "0"]
    assert completion_parses(problem, problem.canonical_solution)
    assert not completion_parses(problem, _cut_in_half(problem.canonical_solution))


@pytest.mark.parametrize(
    ("language", "code"),
    [
        ("python", "def f(x):\n    return x +\n"),
        ("python", "def f(x):\n    if x > 0\n        return 1\n"),
        ("cpp", "int f(int x) {\n    return x +;\n}\n"),
        ("java", "class A {\n    int f(int x) {\n        return x\n    }\n}\n"),
        ("javascript", "const f = (x) => {\n  return x +;\n}\n"),
        ("go", "func f(x int) int {\n    return x +\n}\n"),
        ("rust", "fn f(x: i32) -> i32 {\n    let y = ;\n    y\n}\n"),
        # Another language's code where this one's is expected.
        ("python", "def f(x):\n    for i := 0; i < x; i++ {\n    }\n"),
        ("go", "func f(x int) int {\n    def g(y):\n        return y\n}\n"),
        # Blocks Python refuses ("expected an indented block") and tree-sitter-python accepts.
        ("python", "def f(x):\n    if not None:\n        # a comment\n    # another\n"),
        ("python", "def f(x):\n    if x:\n    return 1\n"),
        ("python", "def f(x):\n    for y in x:\n        # the loop's body\n"),
        ("python", "class A:\n    # nothing\n"),
    ],
)
def test_broken_programs_do_not_parse(language, code):
    assert not parses(code, language)


def test_a_blank_completion_does_not_parse_though_a_docstring_body_is_valid_python():
    (problem,) = [p for p in load_embedded(["python"]) if p.number == "0"]
    assert parses(problem.prompt, "python")
    assert not completion_parses(problem, "\n   \n")


def test_cpp_typeid_of_a_builtin_type_parses():
    code = "bool f(boost::any a) {\n    return a.type() == typeid(unsigned int);\n}\n"
    assert parses(code, "cpp")
    assert not parses(code.replace("==", "= ="), "cpp")


def test_a_language_without_a_grammar_is_named():
    with pytest.raises(GeexError, match="no tree-sitter grammar for 'haskell'"):
        parses("main = pure ()", "haskell")


COMMENTS_ALONE = {
    "python": "    # The answer, first the base case\n    # then the rest\n",
    "cpp": "    // The answer\n}\n",
    "java": "        /* The answer */\n    }\n}\n",
    "javascript": "  // The answer\n}\n",
    "go": "\t// The answer\n}\n",
    "rust": "    /// The answer\n    // then the rest\n}\n",
}


@pytest.mark.parametrize("language", COMMENTS_ALONE)
def test_comments_and_punctuation_alone_wrote_no_code_though_the_program_parses(language):
    """A young model's commonest completion is a comment: its program is valid, and counts as
    not parsing all the same; the same completion with one statement of code does parse."""
    from geex.eval.programs import untested_program

    (problem,) = [p for p in load_embedded([language]) if p.number == "0"]
    comments = COMMENTS_ALONE[language]
    assert parses(untested_program(problem, comments), language)
    assert not completion_parses(problem, comments)
    closing = "".join(line + "\n" for line in comments.splitlines() if "/" not in line)
    if closing.strip():  # the braces alone: punctuation, no code
        assert parses(untested_program(problem, closing), language)
        assert not completion_parses(problem, closing)
    statement = {"python": "    pass\n", "go": "\tpanic(0)\n"}.get(language, "    throw 0;\n")
    if language == "rust":
        statement = "    panic!();\n"
    if language == "java":
        statement = "        throw new RuntimeException();\n"
    assert completion_parses(problem, statement + comments)


@pytest.mark.parametrize(
    "code",
    [
        "def f(x):\n    if not None:\n        # a comment\n    # another\n",
        "def f(x):\n    if x:\n    return 1\n",
        "def f(x):\n    for y in x:\n        # the loop's body\n",
    ],
)
def test_python_blocks_without_a_statement_are_what_python_refuses(code):
    """The rule follows Python's own parser: these do not compile, and a comment beside a
    statement in a block is fine."""
    with pytest.raises(SyntaxError):
        compile(code, "<completion>", "exec")
    fine = "def f(x):\n    if x:\n        # a comment\n        return 1\n    return 0\n"
    compile(fine, "<completion>", "exec")
    assert parses(fine, "python")


@pytest.mark.parametrize("language", ["python", "javascript"])
def test_a_completion_nesting_deeper_than_the_recursion_limit_is_checked(language):
    """A young model loops on ``+ 1`` for hundreds of tokens: a left-nested tree deeper than
    Python's recursion limit, which the checks walk without recursing."""
    chain = " + ".join(["1"] * 2000)
    head = {"python": "def f(a):\n", "javascript": "const f = (a) => {\n"}[language]
    body = {"python": f"    return {chain}\n", "javascript": f"  return {chain};\n}};\n"}[language]
    assert parses(head + body, language, code_from=len(head))
