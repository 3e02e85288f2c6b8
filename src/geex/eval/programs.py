"""From a completion to the program that is judged, per language, as HumanEval-X does it.

Two steps, kept apart because generations made elsewhere arrive already cut:

- ``cut_generation`` ends a raw model completion where the function ends (Python: at the first
  non-indented line; brace languages: at the brace that closes the body, plus the class's
  closing brace for Java, whose methods sit inside ``class Solution``). Model backends' output
  goes through it; ``--samples`` and canonical solutions do not.
- ``assemble`` joins preamble, prompt, completion and tests exactly as the reference harness
  (``codegeex/benchmark/humaneval-x``) does, including its quirks: Python cuts again at the
  first non-indented line; C++ and Go get the reference's import preamble; Go's prompt loses
  its import block, which comes back as the test setup plus the packages the completion uses;
  Rust is ``fn main(){}`` + declaration + prompt + completion + tests.

torch (through :mod:`geex.serve.completion`) is imported inside a function, so that
building and judging programs stays light.
"""

from __future__ import annotations

from geex.eval.problems import Problem
from geex.languages import Language

# The lines the reference harness puts before every program (its IMPORT_HELPER table).
PYTHON_PREAMBLE = (
    "import math", "import re", "import sys", "import copy", "import datetime",
    "import itertools", "import collections", "import heapq", "import statistics",
    "import functools", "import hashlib", "import numpy", "import numpy as np", "import string",
    "from typing import *", "from collections import *",
)  # fmt: skip
CPP_PREAMBLE = (
    "#include<stdlib.h>", "#include<algorithm>", "#include<math.h>", "#include<stdio.h>",
    "#include<vector>", "#include<string>", "#include<climits>", "#include<cstring>",
    "#include<iostream>",
)  # fmt: skip
# Go packages imported when the completion mentions "<last path part>." and the test setup
# does not already import them.
GO_HELPER_PACKAGES = (
    "math", "strings", "fmt", "strconv", "time", "bytes", "regexp", "sort", "math/rand",
    "crypto/md5",
)  # fmt: skip
RUST_MAIN = "\nfn main(){ \n } \n"


def cut_python(code: str) -> str:
    """Keep lines up to the first non-empty one that is not indented."""
    kept = []
    for line in code.split("\n"):
        if line.strip() and line[0] not in " \t":
            break
        kept.append(line)
    return "\n".join(kept)


def cut_generation(text: str, language: Language) -> str:
    """Cut a raw completion where the function being written ends."""
    if language.key == "python":
        return cut_python(text)
    from geex.serve.completion import closing_brace_end, completion_end

    end = completion_end(text, language.stop_sequences, language)
    if end is None:
        return text
    cut = text[:end]
    if language.key == "java" and closing_brace_end(text) == end:
        cut += "\n}"  # the method is closed; close ``class Solution`` as the prompt opened it
    return cut


def assemble(problem: Problem, completion: str, *, example_test: bool = False) -> str:
    """The whole program that runs the problem's tests against ``completion``."""
    program = untested_program(problem, completion)
    test = problem.tests(example_test)
    if problem.language.key == "python":
        return program + "\n" + test + "\n"
    if problem.language.key == "rust":
        return program + test
    return program + "\n" + test


def untested_program(problem: Problem, completion: str) -> str:
    """What :func:`assemble` puts before the tests: the program the model's text is part of."""
    key = problem.language.key
    prompt = problem.prompt
    if key == "python":
        preamble = "\n".join(PYTHON_PREAMBLE) + "\n"
        return preamble + prompt + cut_python(completion)
    if key == "cpp":
        preamble = "".join(line + "\n" for line in CPP_PREAMBLE if line not in prompt)
        return preamble + "\n" + prompt + completion
    if key in ("java", "javascript"):
        return prompt + completion
    if key == "go":
        return _untested_go(problem, completion)
    if key == "rust":
        return RUST_MAIN + problem.declaration + prompt + completion
    raise ValueError(f"no program layout for {problem.language.name}")


def _untested_go(problem: Problem, completion: str) -> str:
    setup = problem.extra.get("test_setup", "package main\n")
    prompt = problem.prompt.replace(problem.extra.get("import", ""), "")
    used = [
        f'"{package}"'
        for package in GO_HELPER_PACKAGES
        if package not in setup and package.rsplit("/", 1)[-1] + "." in completion
    ]
    imports = "import (\n" + "    ".join(p + "\n" for p in used) + ")\n" if used else ""
    return setup + "\n" + imports + prompt + completion
