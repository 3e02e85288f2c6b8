"""Output folders a command owns: it writes into, and deletes, only folders it made itself.

A command marks each folder it makes with a record file (``geex data``: ``work/config.json``,
``geex train``: ``geex-train.json``) written when it starts. A later run of the command finds
its record and continues or refuses; a folder without the record that holds anything else
belongs to someone else and is never written to. ``--overwrite`` deletes a folder only when
its record is there.
"""

from __future__ import annotations

import shutil
from collections.abc import Collection
from pathlib import Path

from geex.errors import GeexError


def claim_output_folder(
    folder: Path,
    *,
    owned: bool,
    command: str,
    overwrite: bool = False,
    ignored: Collection[str] = (),
) -> bool:
    """Check that ``command`` may write into ``folder``; True when it holds an earlier run.

    ``owned``: the command's record is in ``folder``. With ``overwrite``, an owned folder is
    deleted (and the run starts anew). A folder that is not owned must be absent or empty,
    but for the names in ``ignored`` (files another command puts there before this one runs).
    """
    if folder.exists() and not folder.is_dir():
        raise GeexError(f"{folder} is a file, not a folder: give another --out")
    if owned:
        if not overwrite:
            return True
        shutil.rmtree(folder)
        return False
    if folder.is_dir() and any(entry.name not in ignored for entry in folder.iterdir()):
        raise GeexError(
            f"{folder} exists and is not a `{command}` output folder: give another --out"
        )
    return False
