"""Where a converter writes: apart from what it reads, all at once, and over nothing else.

Every ``geex convert`` verb reads a checkpoint and writes another. Writing over the input
would destroy it before it is fully read (``geex convert to-hf DIR DIR`` once replaced the
model's weights, then crashed), so an output that is an input, or holds one, is refused;
paths are compared resolved, so a symlink, ``DIR/.`` or a relative path is no way around it.
The output is filled in a temporary folder beside it and renamed into place at the end
(:func:`geex.atomic.atomic_folder`), so a crash or an error mid-write leaves no half-written
output. An existing output folder is replaced only when it is empty, or when it holds an
earlier output of the same kind and the caller says ``overwrite`` (``--overwrite``): a
trained model is never replaced by a mistyped path. Any other folder is refused, never
emptied, whatever ``overwrite`` says.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from geex.atomic import atomic_folder
from geex.errors import GeexError
from geex.os_faults import describe_os_fault


def check_apart(inputs: Sequence[str | os.PathLike], output: str | os.PathLike) -> None:
    """Refuse an ``output`` that is one of ``inputs``, or a folder holding one."""
    out = Path(output).resolve()
    for source in inputs:
        src = Path(source).resolve()
        if src == out or _same_file(src, out):
            raise GeexError(
                f"the output {output} is the input {source}: writing it would destroy the "
                "input; give another output path"
            )
        if src.is_relative_to(out):
            raise GeexError(
                f"the output {output} holds the input {source}: replacing it would destroy "
                "the input; give another output path"
            )


def _same_file(a: Path, b: Path) -> bool:
    """Two paths to one file or folder (a hard link, a bind mount), when both exist."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


@contextmanager
def output_folder(
    output: str | os.PathLike,
    *,
    inputs: Sequence[str | os.PathLike],
    kind: str,
    is_kind: Callable[[Path], bool],
    needed_bytes: int = 0,
    overwrite: bool = False,
) -> Iterator[Path]:
    """A temporary folder to fill, that becomes ``output`` once the block ends.

    ``kind`` names what is written ("Geex checkpoint"); ``is_kind(folder)`` says whether an
    existing folder holds one, and so may be replaced; ``needed_bytes`` is about what the
    output takes on disk, checked against the free space before anything is written;
    ``overwrite`` allows replacing an existing ``kind`` (and only that).
    """
    check_apart(inputs, output)
    real = Path(output).resolve()  # a symlinked output: write where it points, keep the link
    if real.exists():
        if not real.is_dir():
            raise GeexError(f"{output} is a file; give a folder to write the {kind} to")
        if any(real.iterdir()) and not is_kind(real):
            raise GeexError(
                f"{output} already holds files that are not a {kind}: give a new or empty "
                "folder (only an earlier output of this command is replaced, with --overwrite)"
            )
        if any(real.iterdir()) and not overwrite:
            raise GeexError(
                f"{output} already holds a model: give --overwrite to replace it, or another output"
            )
    if real.parent == real:
        raise GeexError(f"cannot write the {kind} to {output}: give a folder below it")
    try:
        real.parent.mkdir(parents=True, exist_ok=True)
        check_free_space(real.parent, needed_bytes, output)
        with atomic_folder(real) as tmp:
            yield tmp
    except OSError as err:  # a full disk, a read-only folder: nothing was replaced
        fault = describe_os_fault(err, path=str(output)) or err.strerror or err
        raise GeexError(f"cannot write {output}: {fault}") from None


def check_free_space(folder: Path, needed_bytes: int, output: str | os.PathLike) -> None:
    """Refuse to start a write that cannot fit: a serializer that runs out of space midway
    (torch.save) reports it as an obscure internal error rather than "disk full"."""
    free = shutil.disk_usage(folder).free
    if needed_bytes > free:
        raise GeexError(
            f"not enough free space for {output}: it needs about {_size(needed_bytes)}, "
            f"{folder} has {_size(free)} free"
        )


def _size(n: int) -> str:
    return f"{n / 2**20:,.1f} MiB" if n >= 2**20 else f"{n:,} bytes"


def tensor_bytes(tensors) -> int:
    """What ``tensors`` take on disk, their data alone."""
    return sum(t.numel() * t.element_size() for t in tensors.values())


def config_field(folder: Path, key: str):
    """``key`` of ``folder``/config.json, or None when there is no such readable field."""
    try:
        fields = json.loads((folder / "config.json").read_bytes())
    except (OSError, ValueError):
        return None
    return fields.get(key) if isinstance(fields, dict) else None
