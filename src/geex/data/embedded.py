"""The code on this machine: what ``geex data`` reads when it is given no source.

The running Python's standard library (without ``site-packages``), the C and C++ headers under
``/usr/include``, and, where installed, the sources of Go, Java, JavaScript and Rust. Each
language is capped (:data:`PER_LANGUAGE_BYTES`) so that the default run finishes in a few
minutes on two cores; the cap applies to the sorted listing, so the same machine always gives
the same files.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sysconfig
from pathlib import Path

# 8 MiB of each language: the Python standard library alone has ~30 MB of .py files, and the
# whole default run (at most 56 MiB, on a machine with every toolchain) stays within a few
# minutes on two cores.
PER_LANGUAGE_BYTES = 8 * 2**20
# The languages the default collects; the same folders hold JSON, Markdown, shell, ... too.
EMBEDDED_LANGUAGES = ("python", "c", "cpp", "go", "java", "javascript", "rust")
# Installed third-party packages and test data are not the "code on this machine" we want.
EMBEDDED_EXCLUDED_DIRS = frozenset(
    {".git", ".hg", ".svn", "__pycache__", "site-packages", "dist-packages", "testdata"}
)


def with_embedded_defaults(fields: dict) -> dict:
    """``geex data`` fields, capped per language as the default is when they name no sources.

    ``geex data`` and ``geex run`` both read the code on this machine when given no source;
    the caps keep that run short, and fields given explicitly win.
    """
    if fields.get("sources"):
        return fields
    return {"per_language_bytes": PER_LANGUAGE_BYTES, "languages": list(EMBEDDED_LANGUAGES),
            **fields}  # fmt: skip


def python_stdlib() -> list[Path]:
    return [Path(sysconfig.get_paths()["stdlib"])]


def c_headers() -> list[Path]:
    return [Path("/usr/include")]


def go_sources() -> list[Path]:
    roots = []
    go = shutil.which("go")
    if go:
        try:
            goroot = subprocess.run(
                [go, "env", "GOROOT"], capture_output=True, text=True, timeout=10, check=False
            ).stdout.strip()
            if goroot:
                roots.append(Path(goroot) / "src")
        except (OSError, subprocess.SubprocessError):
            pass
    roots += [Path("/usr/lib/go/src"), Path("/usr/local/go/src")]
    return roots


def java_sources() -> list[Path]:
    """The JDK's ``lib/src.zip`` (or ``src.zip`` of older layouts), read as an archive."""
    found = []
    java_home = os.environ.get("JAVA_HOME")
    patterns = [f"{java_home}/lib/src.zip", f"{java_home}/src.zip"] if java_home else []
    patterns += ["/usr/lib/jvm/*/lib/src.zip", "/usr/lib/jvm/*/src.zip"]
    for pattern in patterns:
        found += sorted(Path(p) for p in glob.glob(pattern) if Path(p).is_file())  # not dangling
    return found[:1]  # one JDK is enough: the others hold the same classes


def javascript_sources() -> list[Path]:
    return [
        Path("/usr/lib/node_modules"),
        Path("/usr/share/nodejs"),
        Path("/usr/local/lib/node_modules"),
    ]


def rust_sources() -> list[Path]:
    home = Path.home()
    roots = sorted(Path(p) for p in glob.glob(str(home / ".rustup/toolchains/*/lib/rustlib/src")))
    roots += [Path("/usr/lib/rustlib/src"), Path("/usr/share/cargo/registry")]
    return roots


def embedded_sources() -> list[Path]:
    """The default sources that exist here, each once, in a fixed order."""
    seen, sources = set(), []
    for group in (
        python_stdlib,
        c_headers,
        go_sources,
        java_sources,
        javascript_sources,
        rust_sources,
    ):
        for path in group():
            if not path.exists():
                continue
            resolved = path.resolve()
            if resolved in seen:
                continue
            seen.add(resolved)
            sources.append(path)
    return sources
