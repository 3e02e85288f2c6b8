"""A library the benchmark needs and the machine lacks makes a sample "unavailable", naming the
package and its install command; one only the completion needs is still the model's error.
Run: .venv/bin/python -m pytest tests/eval/test_unavailable.py -q"""

from __future__ import annotations

import pytest

from geex.eval.evaluator import EvalConfig, Evaluator
from geex.eval.libraries import blame_missing_library, install_hint
from geex.eval.runners import RunSettings
from geex.eval.verdicts import COMPILE_ERROR, RUNTIME_ERROR, UNAVAILABLE, Judgement
from tests.conftest import required_program

from .conftest import inline_sample

ABSENT_PY = "geex_absent_module_for_tests"
ABSENT_HEADER = "geex_absent/library.hpp"


@pytest.fixture
def gpp():
    return required_program("g++", package="g++")


@pytest.fixture(scope="module")
def bare_evaluator(tmp_path_factory):
    """An evaluator whose cache holds no npm package, and no NODE_PATH to find one in."""
    required_program("node", package="nodejs")
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("NODE_PATH", raising=False)
        config = EvalConfig(workers=1, settings=RunSettings(timeout=5.0),
                            cache_dir=tmp_path_factory.mktemp("cache"))  # fmt: skip
        with Evaluator(config) as ev:
            yield ev


def judge(evaluator, sample):
    (result,) = evaluator.judge([sample])
    return result


def test_benchmark_test_requiring_a_missing_npm_package_is_unavailable(bare_evaluator):
    sample = inline_sample(
        "js",
        "const double = (x) => {\n",
        "  return 2 * x;\n};\n",
        "const _ = require('lodash');\nconsole.assert(double(2) === _.multiply(2, 2));\n",
    )
    result = judge(bare_evaluator, sample)
    assert result.verdict == UNAVAILABLE
    assert result.missing_package == "lodash"
    assert result.install == "geex eval prepare --npm lodash"
    assert "lodash" in result.detail and "geex eval prepare --npm lodash" in result.detail


def test_completion_requiring_a_missing_npm_package_is_a_runtime_error(bare_evaluator):
    sample = inline_sample(
        "js",
        "const double = (x) => {\n",
        "  const _ = require('lodash');\n  return _.multiply(2, x);\n};\n",
        "console.assert(double(2) === 4);\n",
    )
    result = judge(bare_evaluator, sample)
    assert result.verdict == RUNTIME_ERROR
    assert result.missing_package == ""


def test_completion_requiring_a_package_of_the_reference_environment_is_unavailable(
    bare_evaluator,
):
    """As JavaScript/162's canonical solution does: the reference harness installs js-md5."""
    sample = inline_sample(
        "js",
        "const hash = (text) => {\n",
        "  const md5 = require('js-md5');\n  return md5(text);\n};\n",
        "console.assert(hash('') === 'd41d8cd98f00b204e9800998ecf8427e');\n",
    )
    result = judge(bare_evaluator, sample)
    assert result.verdict == UNAVAILABLE
    assert result.install == "geex eval prepare --npm js-md5@0.8.3"


def test_benchmark_test_importing_a_missing_python_module_is_unavailable(evaluator):
    sample = inline_sample(
        "python",
        "def double(x):\n",
        "    return 2 * x\n",
        f"import {ABSENT_PY}\nassert double(2) == 4\n",
    )
    result = judge(evaluator, sample)
    assert result.verdict == UNAVAILABLE
    assert result.missing_package == ABSENT_PY
    assert result.install == f"geex eval prepare --pip {ABSENT_PY}"


def test_completion_importing_a_missing_python_module_is_a_runtime_error(evaluator):
    sample = inline_sample(
        "python",
        "def double(x):\n",
        f"    import {ABSENT_PY}\n    return 2 * x\n",
        "assert double(2) == 4\n",
    )
    result = judge(evaluator, sample)
    assert result.verdict == RUNTIME_ERROR
    assert "ModuleNotFoundError" in result.stderr


@pytest.mark.usefixtures("gpp")
def test_benchmark_prompt_including_a_missing_header_is_unavailable(evaluator):
    sample = inline_sample(
        "cpp",
        f"#include<{ABSENT_HEADER}>\nint twice(int x){{\n",
        "return 2*x;}\n",
        "#undef NDEBUG\n#include<assert.h>\nint main(){assert(twice(2)==4);}\n",
    )
    result = judge(evaluator, sample)
    assert result.verdict == UNAVAILABLE
    assert result.missing_package == ABSENT_HEADER
    assert ABSENT_HEADER in result.install


@pytest.mark.usefixtures("gpp")
def test_completion_including_a_missing_header_is_a_compile_error(evaluator):
    sample = inline_sample(
        "cpp",
        "int twice(int x){\n",
        f"return 2*x;}}\n#include<{ABSENT_HEADER}>\n",
        "#undef NDEBUG\n#include<assert.h>\nint main(){assert(twice(2)==4);}\n",
    )
    assert judge(evaluator, sample).verdict == COMPILE_ERROR


# The other toolchains' words for a missing library, as their runners capture them.
OTHER_TOOLCHAINS = [
    ("go", 'import (\n    "testing"\n    "github.com/stretchr/testify/assert"\n)\n',
     'main_test.go:5:5: cannot find package "github.com/stretchr/testify/assert" in any of:',
     "golang-github-stretchr-testify-dev", "apt-get install golang-github-stretchr-testify-dev"),
    ("java", "import org.apache.commons.lang3.StringUtils;\n",
     "Main.java:1: error: package org.apache.commons.lang3 does not exist",
     "org.apache.commons.lang3", "the Java package org.apache.commons.lang3 is not in the JDK"),
    ("rust", "use itertools::Itertools;\n",
     "error[E0432]: unresolved import `itertools`\n --> main.rs:4:5",
     "librust-itertools-dev", "apt-get install librust-itertools-dev"),
]  # fmt: skip


@pytest.mark.parametrize("language, test, stderr, package, install", OTHER_TOOLCHAINS)
def test_other_toolchains_missing_library_of_the_benchmark(
    language, test, stderr, package, install
):
    problem = inline_sample(language, "", "", test).task.problem
    judged = blame_missing_library(problem, Judgement(COMPILE_ERROR, "", stderr=stderr))
    assert judged.verdict == UNAVAILABLE
    assert judged.missing_package == package
    assert judged.install.startswith(install)


@pytest.mark.parametrize("language, test, stderr, package, install", OTHER_TOOLCHAINS)
def test_other_toolchains_missing_library_of_the_completion(
    language, test, stderr, package, install
):
    problem = inline_sample(language, "", "", "").task.problem
    judged = blame_missing_library(problem, Judgement(COMPILE_ERROR, "", stderr=stderr))
    assert judged.verdict == COMPILE_ERROR


@pytest.mark.parametrize(
    "language, name, install",
    [
        ("python", "cv2", "geex eval prepare --pip opencv-python"),
        ("python", "yaml.loader", "geex eval prepare --pip PyYAML"),
        ("javascript", "lodash/fp", "geex eval prepare --npm lodash"),
        ("javascript", "@scope/pkg/sub", "geex eval prepare --npm @scope/pkg"),
        ("cpp", "boost/any.hpp", "apt-get install libboost-dev"),
        ("cpp", "openssl/md5.h", "apt-get install libssl-dev"),
    ],
)
def test_install_hint_names_the_package_to_install(language, name, install):
    assert install_hint(language, name).install == install


def test_missing_submodule_of_a_benchmark_import_is_the_completions_error():
    """The preamble imports math; a completion's `import math.nothing` is not the machine's."""
    problem = inline_sample("python", "", "", "").task.problem
    stderr = "ModuleNotFoundError: No module named 'math.nothing'; 'math' is not a package"
    judged = blame_missing_library(problem, Judgement(RUNTIME_ERROR, "", stderr=stderr))
    assert judged.verdict == RUNTIME_ERROR


def test_other_failures_stay_as_they_were():
    """A failed assertion that prints a module error is the program's verdict, not the machine's."""
    problem = inline_sample("python", "", "", f"import {ABSENT_PY}\n").task.problem
    stderr = f"ModuleNotFoundError: No module named '{ABSENT_PY}'"
    failed = Judgement("failed", "assertion failed", stderr=stderr)
    assert blame_missing_library(problem, failed) is failed


def test_runner_checks_name_the_package_too(evaluator, monkeypatch, tmp_path):
    """Go without testify is unavailable before building, naming the Debian package."""
    required_program("go", package="golang-go")
    monkeypatch.setattr("geex.eval.runners.go.TESTIFY", tmp_path / "absent")
    sample = inline_sample(
        "go",
        "func Twice(x int) int {\n",
        "\treturn 2 * x\n}\n",
        "func TestTwice(t *testing.T) {\n\tassert := assert.New(t)\n\tassert.Equal(4, Twice(2))\n}\n",
        test_setup='package main\n\nimport (\n    "testing"\n    "github.com/stretchr/testify/assert"\n)\n',
    )
    result = judge(evaluator, sample)
    assert result.verdict == UNAVAILABLE
    assert result.missing_package == "golang-github-stretchr-testify-dev"
    assert result.install == "apt-get install golang-github-stretchr-testify-dev"
