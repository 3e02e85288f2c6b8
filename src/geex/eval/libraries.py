"""Telling a library this machine lacks from a mistake of the model's.

A benchmark may need a library: a JavaScript test that requires an npm package, a C++ prompt
that includes a boost header. Where the machine lacks it, every sample fails to compile or
run, which would blame the model for the machine. ``blame_missing_library`` reads each
toolchain's own words for a missing module, header, package or crate, and counts them only
when both hold:

- the benchmark's own code (everything of the program but the completion) imports that name,
  or the reference harness's environment provides it (JavaScript/162's canonical solution
  itself requires js-md5, which the reference installs): a completion that imports something
  else that is absent is still the model's mistake;
- the library really is missing on this machine, as the language's runner checks
  (``Runner.lacks_library``): a wrong path inside a library that is there (``rand::Rngg``,
  ``numpy.linalgx``, ``boost/nonexistent.hpp``, ``js-md5/nope``) is the program's mistake too.

Such a sample is "unavailable", naming the package and the command that installs it.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from geex.eval.problems import Problem
from geex.eval.programs import assemble
from geex.eval.runners.javascript import NPM_PACKAGES, npm_package_of
from geex.eval.runners.rust import CRATES, missing_crate
from geex.eval.verdicts import COMPILE_ERROR, RUNTIME_ERROR, Judgement, MissingLibrary

# Each toolchain's message for a name it cannot find; group 1 is the name.
_MISSING = {
    "python": (r"ModuleNotFoundError: No module named '([\w.]+)'",),
    "javascript": (r"Cannot find module '([^'./][^']*)'",),
    "cpp": (r"fatal error: ([^\s:]+): No such file or directory",),
    "go": (
        r"no required module provides package ([\w./-]+)",
        r'cannot find package "([^"]+)"',
        r"package ([\w./-]+) is not in (?:GOROOT|std)",
    ),
    "java": (r"package ([\w.]+) does not exist",),
    # The crate alone: rustc says "unresolved import `rand::Rngg`" for a wrong path in a crate
    # it links, and "unresolved import `rand`" only when it has no crate of that name.
    "rust": (r"unresolved import `(?:::)?(\w+)`", r"can't find crate for `(\w+)`"),
}
_MISSING_PATTERNS = {key: [re.compile(p) for p in ps] for key, ps in _MISSING.items()}

# How each language's source names what it imports; group 1 (or the block) holds the names.
_PYTHON_IMPORT = re.compile(r"^\s*import\s+([\w., \t]+)$|^\s*from\s+([\w.]+)\s+import\b", re.M)
_JS_IMPORT = re.compile(r"""(?:require\s*\(\s*|\bfrom\s+|^\s*import\s+)['"]([^'"]+)['"]""", re.M)
_CPP_INCLUDE = re.compile(r'^\s*#\s*include\s*[<"]([^>"]+)[>"]', re.M)
_GO_IMPORT = re.compile(r'\bimport\s*\(([^)]*)\)|\bimport\s+(?:[\w.]+\s+)?"([^"]+)"')
_JAVA_IMPORT = re.compile(r"^\s*import\s+(?:static\s+)?([\w.]+?)(?:\.\*)?\s*;", re.M)
_RUST_USE = re.compile(r"^\s*(?:pub\s+)?use\s+(?:::)?(\w+)|\bextern\s+crate\s+(\w+)", re.M)
_RUST_BUILT_IN = {"std", "core", "alloc", "crate", "self", "super"}

# Python modules whose pip package has another name.
PIP_NAMES = {
    "cv2": "opencv-python",
    "PIL": "Pillow",
    "sklearn": "scikit-learn",
    "yaml": "PyYAML",
    "bs4": "beautifulsoup4",
    "dateutil": "python-dateutil",
    "Crypto": "pycryptodome",
}
# C and C++ headers (a folder ends in "/") and the Debian package that has them.
DEBIAN_HEADERS = {
    "boost/": "libboost-dev",
    "openssl/": "libssl-dev",
    "gmp.h": "libgmp-dev",
    "gmpxx.h": "libgmp-dev",
    "zlib.h": "zlib1g-dev",
    "Eigen/": "libeigen3-dev",
    "eigen3/": "libeigen3-dev",
    "curl/": "libcurl4-openssl-dev",
    "fmt/": "libfmt-dev",
    "nlohmann/": "nlohmann-json3-dev",
    "gtest/": "libgtest-dev",
}
# What the reference harness's environment has besides each language's standard library.
REFERENCE_ENVIRONMENT = {
    "python": ("numpy",),  # its preamble imports numpy
    "javascript": tuple(NPM_PACKAGES),
    "cpp": ("boost/", "openssl/"),  # it links OpenSSL; Boost is in its image
    "rust": tuple(CRATES),
}
# Go packages (GOPATH mode reads Debian's /usr/share/gocode) and their Debian package.
DEBIAN_GO = {"github.com/stretchr/testify": "golang-github-stretchr-testify-dev"}


def missing_names(language_key: str, output: str) -> list[str]:
    """The names the toolchain of ``language_key`` says it could not find in ``output``."""
    names = []
    for pattern in _MISSING_PATTERNS.get(language_key, ()):
        names += pattern.findall(output)
    return list(dict.fromkeys(names))


def benchmark_imports(problem: Problem) -> set[str]:
    """What the benchmark's own code (prompt, declaration, tests, harness preamble) imports."""
    key = problem.language.key
    code = "\n".join(
        (assemble(problem, ""), problem.prompt, problem.declaration, problem.test,
         problem.example_test, *problem.extra.values())
    )  # fmt: skip
    if key == "python":
        names = set()
        for listed, source in _PYTHON_IMPORT.findall(code):
            if source:
                names.add(source)
            else:
                names.update(part.split()[0] for part in listed.split(",") if part.strip())
        return names
    if key == "javascript":
        return set(_JS_IMPORT.findall(code))
    if key == "cpp":
        return set(_CPP_INCLUDE.findall(code))
    if key == "go":
        names = set()
        for block, single in _GO_IMPORT.findall(code):
            names.update(re.findall(r'"([^"]+)"', block) if block else [single])
        return names
    if key == "java":
        return set(_JAVA_IMPORT.findall(code))
    if key == "rust":
        return {a or b for a, b in _RUST_USE.findall(code)} - _RUST_BUILT_IN
    return set()


def _imported(language_key: str, name: str, imports: set[str]) -> bool:
    """Whether the missing ``name`` is (part of) one of the benchmark's ``imports``."""
    if language_key in ("python", "java"):  # the module itself, or a parent package of it
        return any(i == name or i.startswith(name + ".") for i in imports)
    if language_key == "go":
        return any(i == name or i.startswith(name + "/") for i in imports)
    return name in imports


def in_reference_environment(language_key: str, name: str) -> bool:
    """Whether the reference harness provides ``name`` to every program of the language."""
    if language_key == "javascript":
        name = npm_package_of(name)
    elif language_key == "python":
        name = name.split(".")[0]
    return any(
        name == provided or (provided.endswith("/") and name.startswith(provided))
        for provided in REFERENCE_ENVIRONMENT.get(language_key, ())
    )


def install_hint(language_key: str, name: str) -> MissingLibrary:
    """The package that provides ``name`` and how to install it where the runners look."""
    if language_key == "python":
        package = PIP_NAMES.get(name.split(".")[0], name.split(".")[0])
        return MissingLibrary(name, package, f"geex eval prepare --pip {package}")
    if language_key == "javascript":
        package = npm_package_of(name)
        pinned = f"{package}@{NPM_PACKAGES[package]}" if package in NPM_PACKAGES else package
        return MissingLibrary(name, package, f"geex eval prepare --npm {pinned}")
    if language_key == "cpp":
        for header, package in DEBIAN_HEADERS.items():
            if name == header or (header.endswith("/") and name.startswith(header)):
                return MissingLibrary(name, package, f"apt-get install {package}")
        return MissingLibrary(
            name, "", f"install the library that provides {name} where g++ looks for headers"
        )
    if language_key == "go":
        for path, package in DEBIAN_GO.items():
            if name == path or name.startswith(path + "/"):
                return MissingLibrary(name, package, f"apt-get install {package}")
        return MissingLibrary(
            name, "", f"put the Go package {name} under /usr/share/gocode/src (judged offline)"
        )
    if language_key == "java":
        return MissingLibrary(
            name, "", f"the Java package {name} is not in the JDK, the only one Java is judged with"
        )
    if language_key == "rust":
        return missing_crate(name)
    return MissingLibrary(name, "", f"install {name}")


def blame_missing_library(
    problem: Problem, judgement: Judgement, lacks: Callable[[str], bool]
) -> Judgement:
    """``judgement``, made "unavailable" when the program failed for want of a library that
    the benchmark's own code imports and that this machine lacks (``lacks``: the runner's
    ``lacks_library``)."""
    if judgement.verdict not in (COMPILE_ERROR, RUNTIME_ERROR):
        return judgement
    key = problem.language.key
    names = missing_names(key, judgement.stderr + "\n" + judgement.stdout)
    if not names:
        return judgement
    imports = benchmark_imports(problem)
    for name in names:
        needed = _imported(key, name, imports) or in_reference_environment(key, name)
        if needed and lacks(name):
            return install_hint(key, name).verdict(judgement)
    return judgement
