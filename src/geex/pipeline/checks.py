"""Checks made before a run starts, so that it fails at once with a sentence, not after an hour.

- every local source can be read;
- the disk under ``out`` has room for the data, the checkpoints and the exports;
- the toolchain of each evaluated language is installed (a missing one is left out of the
  evaluation with what to install, rather than failing the run after training).
"""

from __future__ import annotations

import errno
import os
import shutil
from contextlib import contextmanager
from pathlib import Path

from geex.errors import GeexError
from geex.eval.evaluator import EvalConfig, Evaluator

# The embedded default: sources capped at 8 MiB per language (up to 56 MiB, ~40 MB kept after
# cleaning here) make ~150 MB of work files and shards.
EMBEDDED_DATA_BYTES = 200 * 2**20
# Work files (cleaned copies, signatures) and shards, per byte of source code.
DATA_BYTES_PER_SOURCE_BYTE = 3.0
# Weights, AdamW moments and the scaler per parameter in a checkpoint (fp32), plus the exports.
CHECKPOINT_BYTES_PER_PARAM = 12
EXPORT_BYTES_PER_PARAM = 8  # Geex and Hugging Face folders, fp32 each


def check_sources_readable(sources: list[str]) -> None:
    """Each local source exists and can be read (URLs and dataset names are checked later)."""
    for spec in sources:
        path = Path(spec).expanduser()
        if "://" in spec or spec.startswith(("github:", "hf:", "git@")):
            continue
        if not path.exists():
            if path.is_symlink():
                raise GeexError(f"source {spec} is a broken symbolic link")
            continue  # not a path: `geex data` says what it expected
        if not os.access(path, os.R_OK) or (path.is_dir() and not os.access(path, os.X_OK)):
            raise GeexError(
                f"source {spec} cannot be read (permission denied): give this user read access "
                f"or leave it out"
            )


def data_disk_bytes(sources: list[str]) -> int:
    """Work files and shards made from ``sources`` (none: the code on this machine)."""
    if not sources:
        return EMBEDDED_DATA_BYTES
    found = sum(_tree_bytes(Path(s)) for s in sources if Path(s).exists())
    return int(found * DATA_BYTES_PER_SOURCE_BYTE)


def checkpoint_disk_bytes(params: int, keep_checkpoints: int) -> int:
    """``keep_checkpoints`` + 1 checkpoints: one is written before the oldest goes."""
    return params * CHECKPOINT_BYTES_PER_PARAM * (keep_checkpoints + 1)


def export_disk_bytes(params: int) -> int:
    """The two exported models (Geex and Hugging Face folders)."""
    return params * EXPORT_BYTES_PER_PARAM


def check_disk_space(out: Path, needed: int) -> None:
    """Refuse to start when the file system under ``out`` has less room than ``needed``."""
    existing = out
    while not existing.exists():
        existing = existing.parent
    free = shutil.disk_usage(existing).free
    if free < needed:
        raise GeexError(
            f"not enough disk space under {out}: {_size(free)} free, this run needs about "
            f"{_size(needed)} (data, checkpoints, exports); free some space or choose another "
            "--out"
        )


@contextmanager
def disk_full_is_an_error(out: Path):
    """Turn "no space left on device" anywhere in a stage into an error that says what to do."""
    try:
        yield
    except OSError as err:
        if err.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        where = f" writing {err.filename}" if err.filename else ""
        raise GeexError(
            f"the disk is full{where}: free some space and run the same command again; "
            f"finished stages in {out} are kept and training resumes from its last checkpoint"
        ) from None


def missing_toolchains(languages: list[str]) -> dict[str, str]:
    """Language -> what to install, for the evaluated languages that cannot be judged here."""
    with Evaluator(EvalConfig(workers=1)) as evaluator:
        return evaluator.missing_toolchains(languages)


def _tree_bytes(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                continue
    return total


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError
