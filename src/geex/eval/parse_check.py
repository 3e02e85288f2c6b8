"""Whether a sampled program parses: tree-sitter, with the grammars published on PyPI.

What is parsed is the program the evaluator runs minus its tests (:func:`untested_program`):
the prompt and the completion as the stop rules cut it, with what the reference harness puts
around them. The tests are left out because they are the benchmark's, not the model's: a
syntax error in them says nothing of the sample. The harness's preamble stays because it is
what makes the completed function a whole compilation unit in each language:

- Python: the imports, the prompt (signature and docstring), the body cut at the first
  unindented line, as ``assemble`` cuts it.
- C++: the reference's ``#include`` lines, then prompt and completion: one translation unit.
- Java: the prompt opens ``class Solution`` and the method; the completion closes both (the
  stop rules add the class's brace after the method's, as the harness expects).
- JavaScript: ``const f = (...) => {`` and the body.
- Go: the test file's ``package`` clause and imports, the prompt without its own import
  block, the completion: the file ``go test`` compiles, less the test function.
- Rust: ``fn main(){}``, the declaration (``use`` lines and signature), the doc comment, the
  body.

A completion that wrote no code counts as not parsing, though its program may: a blank one
(a function whose body is its docstring is valid Python), one of comments alone (a young
model's commonest answer), or one of punctuation alone (a lone ``}``). Code is a token of the
completion, outside comments, with a letter or digit in it: a name, a keyword, a literal.

tree-sitter recovers from errors by inserting ERROR nodes (text it could not place) and
MISSING nodes (a token it assumed, such as an unclosed ``}``); ``Node.has_error`` is true when
the tree holds either, which is the test here. Two grammar gaps are bridged:

- tree-sitter-cpp (0.23) parses ``typeid`` of an expression but not of a built-in type, which
  two HumanEval-X canonical solutions use (CPP/22, CPP/137: ``typeid(int)``); such a ``typeid``
  is read as ``typeid`` of an expression of the same shape before parsing.
- tree-sitter-python (0.23) accepts a block with no statement in it, which Python refuses
  ("expected an indented block"): ``if x:`` followed by comments only, or by a line at the
  ``if``'s own indentation. A young model writes exactly that (``if not None:`` and then a
  run of comments), so a Python tree with an empty block does not parse here.

With them, every canonical solution of every HumanEval-X language parses
(``tests/eval/test_parse_check.py``).
"""

from __future__ import annotations

import importlib
import re
from functools import cache

from geex.errors import GeexError
from geex.eval.problems import Problem
from geex.eval.programs import cut_python, untested_program

# Language key -> the PyPI package whose ``language()`` is its grammar.
GRAMMARS = {
    "python": "tree_sitter_python",
    "cpp": "tree_sitter_cpp",
    "java": "tree_sitter_java",
    "javascript": "tree_sitter_javascript",
    "go": "tree_sitter_go",
    "rust": "tree_sitter_rust",
}

_CPP_TYPEID_OF_BUILTIN = re.compile(
    r"\btypeid\s*\(\s*(?:(?:unsigned|signed|long|short|const)\s+)*"
    r"(?:int|double|float|char|bool|long|short|void|unsigned|signed)\s*\)"
)


@cache
def parser(language_key: str):
    """A tree-sitter parser for one language (made once: loading a grammar is not free)."""
    import tree_sitter

    module_name = GRAMMARS.get(language_key)
    if module_name is None:
        raise GeexError(f"no tree-sitter grammar for {language_key!r}; have {', '.join(GRAMMARS)}")
    grammar = importlib.import_module(module_name)
    return tree_sitter.Parser(tree_sitter.Language(grammar.language()))


def parses(code: str, language_key: str, code_from: int | None = None) -> bool:
    """Whether ``code`` parses in its language with no ERROR and no MISSING node; with
    ``code_from``, also whether its text from that character on holds code (the module's
    docstring says what counts)."""
    if language_key == "cpp":
        kept = len(code) - (code_from if code_from is not None else len(code))
        code = _CPP_TYPEID_OF_BUILTIN.sub("typeid(0)", code)
        code_from = None if code_from is None else len(code) - kept
    data = code.encode("utf-8", "surrogatepass")
    tree = parser(language_key).parse(data)
    if tree.root_node.has_error:
        return False
    if language_key == "python" and _has_empty_block(tree.root_node):
        return False
    if code_from is None:
        return True
    start = len(code[:code_from].encode("utf-8", "surrogatepass"))
    return _holds_code(tree.root_node, start, data)


def _has_empty_block(root) -> bool:
    """Whether a Python ``block`` in the tree holds no statement (comments are not). The walk
    keeps its own stack: a looping completion (``1 + 1 + ...``) nests deeper than Python's
    recursion limit."""
    stack = [root]
    while stack:
        node = stack.pop()
        if node.type == "block" and not any(
            child.is_named and child.type != "comment" for child in node.children
        ):
            return True
        stack.extend(node.children)
    return False


def _holds_code(root, start: int, data: bytes) -> bool:
    """Whether a token from byte ``start`` on, outside comments, has a letter or digit (an
    explicit stack, as in :func:`_has_empty_block`)."""
    stack = [root]
    while stack:
        node = stack.pop()
        if node.end_byte <= start or "comment" in node.type:
            continue
        if node.child_count == 0:
            text = data[max(node.start_byte, start) : node.end_byte].decode("utf-8", "replace")
            if any(character.isalnum() for character in text):
                return True
        stack.extend(node.children)
    return False


def completion_parses(problem: Problem, completion: str) -> bool:
    """Whether the program of ``completion`` (as it follows the prompt) parses, and the
    completion wrote code (see the module's docstring). The completion ends the program in
    every language's layout (:func:`untested_program`)."""
    if not completion.strip():
        return False
    program = untested_program(problem, completion)
    written = cut_python(completion) if problem.language.key == "python" else completion
    return parses(program, problem.language.key, code_from=len(program) - len(written))
