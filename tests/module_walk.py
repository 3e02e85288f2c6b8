"""Imports every module of the installed ``geex`` package and prints those that fail, as JSON.

Standard library only, so that it runs in an environment without the test tools:
``python tests/module_walk.py`` exits 1 and lists ``{module: error}`` when any module fails.
"""

from __future__ import annotations

import importlib
import json
import pkgutil
import sys


def failing_imports() -> dict[str, str]:
    """Every ``geex`` module that does not import, with its error (``__main__`` modules run
    the CLI when imported, so they are left out)."""
    import geex

    failures = {}
    for module in pkgutil.walk_packages(geex.__path__, "geex."):
        if module.name.rsplit(".", 1)[-1] == "__main__":
            continue
        try:
            importlib.import_module(module.name)
        except Exception as err:  # reported, whatever it is
            failures[module.name] = f"{type(err).__name__}: {err}"
    return failures


def module_count() -> int:
    import geex

    return sum(1 for _ in pkgutil.walk_packages(geex.__path__, "geex."))


if __name__ == "__main__":
    failures = failing_imports()
    print(json.dumps({"modules": module_count(), "failures": failures}))
    sys.exit(1 if failures else 0)
