"""What a refused write or a misplaced path means to the user, said the same way everywhere.

A full disk, a quota, a read-only mount, a forbidden folder, or a file where a folder goes:
faults of the machine or of a path the user gave, not of Geex. The CLI, ``geex data``,
checkpoint saves and ``geex convert`` each name them with :func:`describe_os_fault` and add
only their own context (which output, which step).

torch's distributed checkpoint wraps what each rank raised in a ``CheckpointException``;
:func:`os_error_behind` looks inside it without importing torch (the CLI must stay light).
"""

from __future__ import annotations

import errno
import sys

_SPACE = "free some space"
_ACCESS = "give this user access or choose another path"

# errno -> how the fault reads, ``{path}`` being the path at fault.
_FAULTS = {
    errno.ENOSPC: "no space left on device while writing {path}: " + _SPACE,
    errno.EDQUOT: "disk quota exceeded while writing {path}: " + _SPACE,
    errno.EROFS: "read-only file system at {path}: choose a writable folder",
    errno.EACCES: "permission denied for {path}: " + _ACCESS,
    errno.EPERM: "operation not permitted on {path}: " + _ACCESS,
    errno.ENOTDIR: "a part of {path} is a file, not a folder: choose another path",
    errno.EEXIST: "{path} already exists and is in the way (a file where a folder goes?): "
    "choose another path",
    errno.EISDIR: "{path} is a folder, not a file: choose another path",
}
NO_ROOM = frozenset({errno.ENOSPC, errno.EDQUOT})


def describe_os_fault(err: BaseException, path: str | None = None) -> str | None:
    """One line for the fault of the machine behind ``err``, or None for any other error.

    The path named is the one the OSError carries, else ``path`` (what the caller was
    writing). A fault that names no path is not described (it may be a bug), except a full
    disk, which a write reports at flush time without a file name.
    """
    cause = os_error_behind(err)
    if cause is None or cause.errno not in _FAULTS:
        return None
    where = cause.filename or path
    if where is None and cause.errno not in NO_ROOM:
        return None
    return _FAULTS[cause.errno].format(path=where or "a file")


def os_error_behind(err: BaseException) -> OSError | None:
    """The OSError behind ``err``: itself, its cause or context, or what a rank raised inside
    torch's distributed checkpoint."""
    checkpoint_exception = _checkpoint_exception_type()
    seen = set()
    pending = [err]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, OSError):
            return current
        if checkpoint_exception is not None and isinstance(current, checkpoint_exception):
            pending += [exc for exc, _ in current.failures.values()]
        pending += [current.__cause__, current.__context__]
    return None


def _checkpoint_exception_type() -> type | None:
    """torch's CheckpointException, if torch's checkpointing is loaded (else none was raised)."""
    api = sys.modules.get("torch.distributed.checkpoint.api")
    return getattr(api, "CheckpointException", None)
