"""Every geex module imports in the test environment, every subcommand is offered, and one
whose module fails to import is listed with its error instead of vanishing from `geex --help`."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

from geex import cli
from tests.module_walk import failing_imports


def test_every_geex_module_imports():
    assert failing_imports() == {}


def test_help_lists_every_subcommand(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    shown = capsys.readouterr().out
    for stage in cli._STAGES:
        assert f"    {stage}" in shown
    assert "UNAVAILABLE" not in shown


@pytest.fixture
def plot_fails_to_import(monkeypatch):
    real_import = importlib.import_module

    def import_module(name, *args):
        if name == "geex.cli.plot":
            raise ModuleNotFoundError("No module named 'matplotlib'", name="matplotlib")
        return real_import(name, *args)

    monkeypatch.setattr(importlib, "import_module", import_module)


def test_a_subcommand_that_fails_to_import_is_listed_with_its_error(plot_fails_to_import, capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    shown = " ".join(capsys.readouterr().out.split())
    assert "plot UNAVAILABLE: ModuleNotFoundError: No module named 'matplotlib'" in shown
    assert "a dependency is missing: run scripts/setup.sh again" in shown
    assert "serve serve a model" in shown  # the others are still offered


def test_running_a_subcommand_that_fails_to_import_is_an_error_not_a_traceback(
    plot_fails_to_import, capsys
):
    assert cli.main(["plot", "runs/x"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("geex plot: error: this subcommand cannot load: ModuleNotFoundError")
    assert "Traceback" not in error


def test_help_imports_no_heavy_library():
    """`geex --help` (every subcommand's flags) stays light: the configs it reads import no
    torch, datatrove, transformers or matplotlib."""
    probe = (
        "import sys, geex.cli; geex.cli.build_parser(); "
        "print(sorted({'torch', 'datatrove', 'transformers', 'matplotlib'} & set(sys.modules)))"
    )
    shown = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                           check=True).stdout  # fmt: skip
    assert shown.strip() == "[]"
