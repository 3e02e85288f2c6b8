"""A library the benchmark needs and the machine lacks makes a sample "unavailable", naming the
package and its install command; one only the completion needs is still the model's error.
Run: .venv/bin/python -m pytest tests/eval/test_unavailable.py -q"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from geex.eval.evaluator import EvalConfig, Evaluator
from geex.eval.libraries import blame_missing_library, install_hint
from geex.eval.runners import RunSettings
from geex.eval.runners.rust import RustRunner, missing_crate
from geex.eval.sandbox import Sandbox
from geex.eval.verdicts import COMPILE_ERROR, RUNTIME_ERROR, UNAVAILABLE, Judgement
from tests.conftest import missing, required_program

from .conftest import inline_sample

ABSENT_PY = "geex_absent_module_for_tests"
ABSENT_HEADER = "geex_absent/library.hpp"


def lacks_everything(name: str) -> bool:
    """A machine that lacks every library its toolchain names."""
    return True


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
     "itertools", "Geex links only the crates rand, regex, md5"),
]  # fmt: skip


@pytest.mark.parametrize("language, test, stderr, package, install", OTHER_TOOLCHAINS)
def test_other_toolchains_missing_library_of_the_benchmark(
    language, test, stderr, package, install
):
    problem = inline_sample(language, "", "", test).task.problem
    judged = blame_missing_library(
        problem, Judgement(COMPILE_ERROR, "", stderr=stderr), lacks_everything
    )
    assert judged.verdict == UNAVAILABLE
    assert judged.missing_package == package
    assert judged.install.startswith(install)


@pytest.mark.parametrize("language, test, stderr, package, install", OTHER_TOOLCHAINS)
def test_other_toolchains_missing_library_of_the_completion(
    language, test, stderr, package, install
):
    problem = inline_sample(language, "", "", "").task.problem
    judged = blame_missing_library(
        problem, Judgement(COMPILE_ERROR, "", stderr=stderr), lacks_everything
    )
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
    judged = blame_missing_library(
        problem, Judgement(RUNTIME_ERROR, "", stderr=stderr), lacks_everything
    )
    assert judged.verdict == RUNTIME_ERROR


def test_other_failures_stay_as_they_were():
    """A failed assertion that prints a module error is the program's verdict, not the machine's."""
    problem = inline_sample("python", "", "", f"import {ABSENT_PY}\n").task.problem
    stderr = f"ModuleNotFoundError: No module named '{ABSENT_PY}'"
    failed = Judgement("failed", "assertion failed", stderr=stderr)
    assert blame_missing_library(problem, failed, lacks_everything) is failed


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


# A library that is there, named by a wrong path inside it, is the program's mistake.


def test_missing_submodule_of_an_installed_package_is_a_runtime_error(evaluator):
    """numpy is importable here, so `numpy.linalgx` is the completion's invention."""
    sample = inline_sample(
        "python",
        "import numpy\ndef double(x):\n",
        "    import numpy.linalgx\n    return 2 * x\n",
        "assert double(2) == 4\n",
    )
    result = judge(evaluator, sample)
    assert result.verdict == RUNTIME_ERROR
    assert "numpy.linalgx" in result.stderr


@pytest.mark.usefixtures("gpp")
def test_missing_header_in_an_installed_library_is_a_compile_error(evaluator):
    """Boost is installed, so a Boost header that does not exist is no missing library."""
    if not Path("/usr/include/boost").is_dir():
        missing("needs Boost's headers: install the Debian package libboost-dev")
    sample = inline_sample(
        "cpp",
        "#include<boost/nonexistent_header.hpp>\nint twice(int x){\n",
        "return 2*x;}\n",
        "#undef NDEBUG\n#include<assert.h>\nint main(){assert(twice(2)==4);}\n",
    )
    assert judge(evaluator, sample).verdict == COMPILE_ERROR


def fake_npm_package(folder: Path, name: str) -> Path:
    package = folder / name
    package.mkdir(parents=True)
    (package / "package.json").write_text(json.dumps({"name": name, "main": "index.js"}))
    (package / "index.js").write_text("module.exports = (text) => text;\n")
    return folder


def test_missing_file_in_an_installed_npm_package_is_a_runtime_error(
    bare_evaluator, monkeypatch, tmp_path
):
    """js-md5 is on NODE_PATH (the reference environment's package), so `js-md5/nope` is not."""
    monkeypatch.setenv("NODE_PATH", str(fake_npm_package(tmp_path, "js-md5")))
    sample = inline_sample(
        "js",
        "const hash = (text) => {\n",
        "  const md5 = require('js-md5/nope');\n  return md5(text);\n};\n",
        "console.assert(hash('') === '');\n",
    )
    result = judge(bare_evaluator, sample)
    assert result.verdict == RUNTIME_ERROR
    assert result.missing_package == ""


def test_packages_on_node_path_the_reference_lacks_are_not_copied(
    bare_evaluator, monkeypatch, tmp_path
):
    """A global tree on NODE_PATH (npm itself, say) is not the benchmark's environment."""
    monkeypatch.setenv("NODE_PATH", str(fake_npm_package(tmp_path, "geex-global-tool")))
    sample = inline_sample(
        "js",
        "const echo = (text) => {\n",
        "  const tool = require('geex-global-tool');\n  return tool(text);\n};\n",
        "console.assert(echo('a') === 'a');\n",
    )
    result = judge(bare_evaluator, sample)
    assert result.verdict == RUNTIME_ERROR
    assert "Cannot find module 'geex-global-tool'" in result.stderr


@pytest.fixture
def rust_with_rand(tmp_path):
    """A Rust runner that links rand (its rlib need not exist to ask what it links)."""
    runner = RustRunner(Sandbox("rlimits"), tmp_path, RunSettings())
    runner.externs = {"rand": tmp_path / "librand.rlib"}
    return runner


RUST_DECLARATION = "use rand::Rng;\nuse regex::Regex;\nuse md5;\n"


@pytest.mark.parametrize("path", ["rand::Rngg", "rand"])
def test_unresolved_import_in_a_linked_crate_is_a_compile_error(rust_with_rand, path):
    problem = inline_sample("rust", "", "", "", declaration=RUST_DECLARATION).task.problem
    stderr = f"error[E0432]: unresolved import `{path}`\n --> main.rs:9:5"
    failed = Judgement(COMPILE_ERROR, "", stderr=stderr)
    assert blame_missing_library(problem, failed, rust_with_rand.lacks_library) is failed


def test_unresolved_crate_the_runner_does_not_link_is_unavailable(rust_with_rand):
    problem = inline_sample("rust", "", "", "", declaration=RUST_DECLARATION).task.problem
    stderr = "error[E0432]: unresolved import `regex`\n --> main.rs:10:5"
    judged = blame_missing_library(
        problem, Judgement(COMPILE_ERROR, "", stderr=stderr), rust_with_rand.lacks_library
    )
    assert judged.verdict == UNAVAILABLE
    assert judged.missing_package == "librust-regex-dev"


def test_rust_hint_is_one_command_in_backticks():
    """The runner's own check and the toolchain's message give the same hint."""
    command = "apt-get install librust-md5-dev && geex eval prepare --languages rust"
    hint = install_hint("rust", "md5")
    assert hint == missing_crate("md5")
    assert hint.detail == f"md5 (librust-md5-dev) is not installed here: run `{command}`"
