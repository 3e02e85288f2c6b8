"""Stop rules cut raw completions where the function ends, and programs are assembled in the
reference harness's layout for each language. Run: .venv/bin/python -m pytest tests/eval/test_programs.py -q"""

from __future__ import annotations

import pytest

from geex.eval.backends import StopRule
from geex.eval.problems import Problem, humanevalx_language
from geex.eval.programs import CPP_PREAMBLE, PYTHON_PREAMBLE, RUST_MAIN, assemble, cut_generation


def problem(lang: str, prompt: str, test: str = "TEST", **fields) -> Problem:
    extra = {k: fields.pop(k) for k in ("import", "test_setup") if k in fields}
    return Problem(f"X-{lang}/0", humanevalx_language(lang), prompt, fields.get("declaration", ""),
                   "", test, extra=extra)  # fmt: skip


def test_python_stops_at_the_first_line_at_column_zero():
    raw = "    x = 1\n\n    return x\nprint(f(2))\ndef g():\n    pass\n"
    assert cut_generation(raw, humanevalx_language("python")) == "    x = 1\n\n    return x"


@pytest.mark.parametrize("lang", ["cpp", "js", "go", "rust"])
def test_brace_languages_stop_at_the_brace_that_closes_the_function(lang):
    raw = "    if (a) {\n        return 1;\n    }\n    return 2;\n}\n\nint main() { junk }\n"
    assert cut_generation(raw, humanevalx_language(lang)) == (
        "    if (a) {\n        return 1;\n    }\n    return 2;\n}"
    )


def test_java_closes_the_class_after_the_method():
    raw = "        return 2;\n    }\n\n    public int other() { return 3; }\n}\n"
    assert cut_generation(raw, humanevalx_language("java")) == "        return 2;\n    }\n}"


def test_unfinished_completion_is_kept_whole():
    raw = "    for (;;) {\n        x++;"
    assert cut_generation(raw, humanevalx_language("cpp")) == raw


def test_stop_rule_end_agrees_with_the_cut():
    for lang, raw in [
        ("python", "    return 1\nassert f()\n"),
        ("go", "    return 1\n}\nfunc main() {}\n"),
    ]:
        language = humanevalx_language(lang)
        end = StopRule.for_language(language).end(raw)
        assert raw[:end] == cut_generation(raw, language)
    assert StopRule.for_language(humanevalx_language("cpp")).end("    x = {1, 2};") is None


def test_python_program_layout():
    p = problem("python", "def f():\n")
    program = assemble(p, "    return 1\nprint('cut me')\n")
    assert program == "\n".join(PYTHON_PREAMBLE) + "\ndef f():\n    return 1\nTEST\n"


def test_cpp_preamble_leaves_out_headers_the_prompt_has():
    p = problem("cpp", "#include<vector>\n#include<math.h>\nint f(){\n")
    program = assemble(p, "return 1;}\n")
    preamble = [h for h in CPP_PREAMBLE if h not in ("#include<vector>", "#include<math.h>")]
    assert program == "\n".join(preamble) + "\n\n" + p.prompt + "return 1;}\n\nTEST"


def test_java_and_javascript_are_prompt_completion_tests():
    for lang in ("java", "js"):
        assert assemble(problem(lang, "PROMPT"), "BODY") == "PROMPTBODY\nTEST"


def test_go_moves_imports_to_the_test_setup_and_adds_used_helper_packages():
    p = problem(
        "go",
        'import (\n    "math"\n)\n\nfunc F() int {\n',
        **{
            "import": 'import (\n    "math"\n)\n',
            "test_setup": 'package main\n\nimport (\n    "fmt"\n)\n',
        },
    )
    program = assemble(p, '    return len(strings.Split(fmt.Sprint(math.Pi), "."))\n}\n')
    # fmt is already imported by the setup; strings is used and added; math was the prompt's
    # import, removed with it, and comes back because the completion uses "math.".
    assert program == (
        'package main\n\nimport (\n    "fmt"\n)\n'
        '\nimport (\n"math"\n    "strings"\n)\n'
        "\nfunc F() int {\n"
        '    return len(strings.Split(fmt.Sprint(math.Pi), "."))\n}\n\nTEST'
    )


def test_rust_is_main_declaration_prompt_completion_test():
    p = problem("rust", "/* doc */\n", declaration="fn f() -> i32{\n")
    assert assemble(p, "    1\n}\n") == RUST_MAIN + "fn f() -> i32{\n/* doc */\n    1\n}\nTEST"


def test_example_tests_replace_the_hidden_ones_when_present():
    p = Problem("X/0", humanevalx_language("js"), "P", "", "", "HIDDEN", example_test="EXAMPLE")
    assert assemble(p, "", example_test=True).endswith("EXAMPLE")
    rust = Problem("R/0", humanevalx_language("rust"), "P", "", "", "HIDDEN", example_test="None")
    assert assemble(rust, "", example_test=True).endswith("HIDDEN")
