"""Atomic writes: a crash leaves the old file (or folder) or the new one, never half of one."""

from __future__ import annotations

import ctypes
import glob
import os
import shutil
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> None:
    """Call ``write(tmp)`` to fill a temporary file beside ``path``, flush it to disk, then
    rename it over ``path`` (a rename within one folder is atomic on POSIX filesystems)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(str(tmp))
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as err:
        if err.errno and not err.filename:  # a full disk seen at flush names no file
            err.filename = str(path)
        raise
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """``text`` as UTF-8, whatever the locale (JSON files are UTF-8 by definition)."""
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


@contextmanager
def atomic_folder(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder beside ``path`` to fill; once the block ends, it takes
    ``path``'s place (an existing folder there is swapped out, then removed). If the block
    raises, the temporary folder is removed and ``path`` is as it was: a crash leaves the old
    folder or the complete new one, never half of one."""
    path = Path(path)
    _remove_abandoned(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
        for file in tmp.rglob("*"):  # on disk before the rename makes them the output
            if file.is_file():
                with open(file, "rb") as f:
                    os.fsync(f.fileno())
        _swap_in(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _swap_in(new: Path, path: Path) -> None:
    """Put folder ``new`` at ``path``; an existing folder at ``path`` ends up at ``new``."""
    if not path.exists():
        os.rename(new, path)
        return
    if _exchange(new, path):
        return
    # No atomic exchange here (not Linux, or the filesystem lacks it): move the old folder
    # aside first, so that a crash between the two renames still leaves it, under ``aside``.
    aside = path.with_name(f".{path.name}.old-{os.getpid()}")
    os.rename(path, aside)
    os.rename(new, path)
    os.rename(aside, new)


_RENAME_EXCHANGE = 2  # linux/fs.h
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    if sys.platform != "linux":
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:
        return False
    done = renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    return done == 0


def _remove_abandoned(path: Path) -> None:
    """Temporary folders beside ``path`` left by a process killed mid-write."""
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.tmp-*"):
        pid = tmp.name.rsplit("-", 1)[1]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(tmp, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True
