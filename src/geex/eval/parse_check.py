"""Whether a sampled program parses: tree-sitter, with the grammars published on PyPI.

What is parsed is the program the evaluator runs minus its tests (:func:`untested_program`):
the prompt and the completion as the stop rules cut it, with what the reference harness puts
around them. The tests are left out because they are the benchmark's, not the model's: a
syntax error in them says nothing of the sample. The harness's preamble stays because it is
what makes the completed function a whole compilation unit in each language:

- Python: the imports, the prompt (signature and docstring), the body cut at the first
  unindented line, as ``assemble`` cuts it. A function whose body is its docstring is valid
  Python, so a blank completion would parse: it counts as not parsing (the model wrote
  nothing to parse).
- C++: the reference's ``#include`` lines, then prompt and completion: one translation unit.
- Java: the prompt opens ``class Solution`` and the method; the completion closes both (the
  stop rules add the class's brace after the method's, as the harness expects).
- JavaScript: ``const f = (...) => {`` and the body.
- Go: the test file's ``package`` clause and imports, the prompt without its own import
  block, the completion: the file ``go test`` compiles, less the test function.
- Rust: ``fn main(){}``, the declaration (``use`` lines and signature), the doc comment, the
  body.

tree-sitter recovers from errors by inserting ERROR nodes (text it could not place) and
MISSING nodes (a token it assumed, such as an unclosed ``}``); ``Node.has_error`` is true when
the tree holds either, which is the test here. One grammar gap is bridged: tree-sitter-cpp
(0.23) parses ``typeid`` of an expression but not of a built-in type, which two HumanEval-X
canonical solutions use (CPP/22, CPP/137: ``typeid(int)``); such a ``typeid`` is read as
``typeid`` of an expression of the same shape before parsing. With it, every canonical
solution of every HumanEval-X language parses (``tests/eval/test_parse_check.py``).
"""

from __future__ import annotations

import importlib
import re
from functools import cache

from geex.errors import GeexError
from geex.eval.problems import Problem
from geex.eval.programs import untested_program

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


def parses(code: str, language_key: str) -> bool:
    """Whether ``code`` parses in its language with no ERROR and no MISSING node."""
    if language_key == "cpp":
        code = _CPP_TYPEID_OF_BUILTIN.sub("typeid(0)", code)
    tree = parser(language_key).parse(code.encode("utf-8", "surrogatepass"))
    return not tree.root_node.has_error


def completion_parses(problem: Problem, completion: str) -> bool:
    """Whether the program of ``completion`` (as it follows the prompt) parses; a blank
    completion does not (see the module's docstring)."""
    if not completion.strip():
        return False
    return parses(untested_program(problem, completion), problem.language.key)
