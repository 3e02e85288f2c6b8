"""Run one untrusted program in a sandbox and collect what it did.

Three layers, strongest first, picked once per process by probing what the machine allows:

- ``bwrap`` (bubblewrap): the root file system mounted read-only, the job's folder the only
  writable place, private /dev, /proc, PID, network, IPC and UTS namespaces, killed with its
  parent. This is the normal mode.
- ``unshare``: new network and PID namespaces through util-linux, no file-system isolation
  (programs can write wherever their user may: world-writable folders such as /tmp).
- ``rlimits``: resource limits and a process group only.

Every mode adds resource limits through ``prlimit`` (CPU time, address space, processes, file
size, open files, no core files), a wall-clock limit and an output cap enforced here, and kills
the whole process group, then every process of the sandbox user, when a run ends. When the
harness runs as root, programs run as a dedicated unprivileged user per worker slot: root is
exempt from the process limit, and a user of its own cannot signal the harness or read /root.
A weaker mode is never chosen silently: ``Sandbox.warning`` says what is missing, and every
verdict records the mode. ``GEEX_SANDBOX=bwrap|unshare|rlimits`` forces a mode.
"""

from __future__ import annotations

import contextlib
import fcntl
import math
import os
import selectors
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path

from geex.errors import GeexError

MODES = ("bwrap", "unshare", "rlimits")

# Sandbox users when the harness is root: two per worker slot (programs, and the slot's
# Python fork server), so that the process limit of one program cannot starve another and
# cleaning up after one cannot touch another. Each Sandbox reserves a block of them with a
# lock file, so that evaluations running side by side never share a user. Far above the
# ranges distributions hand out.
SLOT_UID_BASE = int(os.environ.get("GEEX_SANDBOX_UID_BASE", "2900000"))
UID_BLOCK = 256
_UID_LOCKS = Path(tempfile.gettempdir()) / "geex-sandbox-users"

_PATH = "/usr/local/bin:/usr/bin:/bin"
_GRACE_SECONDS = 0.5  # after the program exits, how long to wait for its pipes to close


@dataclass(frozen=True)
class Limits:
    """What one sandboxed command may use. ``None`` leaves a limit off."""

    wall_seconds: float = 10.0
    cpu_seconds: float | None = None  # default: the wall limit plus one second
    memory_bytes: int | None = 2 << 30  # address space (RLIMIT_AS)
    processes: int | None = 256  # processes and threads of the sandbox user (RLIMIT_NPROC)
    file_bytes: int | None = 64 << 20  # largest file it may write (RLIMIT_FSIZE)
    open_files: int | None = 256
    output_bytes: int = 1 << 20  # stdout + stderr kept; more is a violation

    def prlimit_args(self) -> list[str]:
        cpu = self.cpu_seconds if self.cpu_seconds is not None else self.wall_seconds + 1
        args = [f"--cpu={math.ceil(cpu)}:{math.ceil(cpu) + 1}", "--core=0"]
        if self.memory_bytes is not None:
            args.append(f"--as={self.memory_bytes}")
        if self.processes is not None:
            args.append(f"--nproc={self.processes}")
        if self.file_bytes is not None:
            args.append(f"--fsize={self.file_bytes}")
        if self.open_files is not None:
            args.append(f"--nofile={self.open_files}")
        return args


@dataclass
class RunOutcome:
    """What a sandboxed command did. ``returncode`` follows subprocess: negative = signal."""

    returncode: int | None
    stdout: str
    stderr: str
    seconds: float
    timed_out: bool = False
    output_exceeded: bool = False
    mode: str = "bwrap"

    @property
    def signal(self) -> int | None:
        """The signal that ended the program, also when a wrapper reported it as 128 + n."""
        rc = self.returncode
        if rc is None:
            return None
        if rc < 0:
            return -rc
        if 128 < rc < 128 + 65:
            return rc - 128
        return None

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


@dataclass
class Sandbox:
    """Runs commands under one sandbox mode; ``Sandbox.detect()`` picks the strongest."""

    mode: str
    warning: str | None = None
    drop_to_slot_users: bool = field(default_factory=lambda: os.geteuid() == 0)

    @classmethod
    def detect(cls) -> Sandbox:
        forced = os.environ.get("GEEX_SANDBOX", "").strip().lower()
        if forced:
            if forced not in MODES:
                raise GeexError(f"GEEX_SANDBOX={forced!r}: choose one of {', '.join(MODES)}")
            sandbox = cls(forced)
            if not sandbox.probe():
                raise GeexError(f"GEEX_SANDBOX={forced}: this machine cannot run that mode")
            sandbox.warning = _WEAKER.get(forced)
            return sandbox
        for mode in MODES:
            sandbox = cls(mode)
            if sandbox.probe():
                sandbox.warning = _WEAKER.get(mode)
                return sandbox
        raise GeexError("no sandbox mode works here: prlimit (util-linux) is missing")

    def probe(self) -> bool:
        """Whether this mode can run a trivial command here."""
        needed = {"bwrap": "bwrap", "unshare": "unshare", "rlimits": "prlimit"}[self.mode]
        if shutil.which(needed) is None or shutil.which("prlimit") is None:
            return False
        with tempfile.TemporaryDirectory(prefix="geex-probe-") as tmp:
            workdir = Path(tmp)
            uid = self.slot_uid(0)
            if uid is not None:
                os.chmod(workdir, 0o755)
                os.chown(workdir, uid, uid)
            outcome = self.run(
                ["/bin/sh", "-c", "echo ok"], workdir, Limits(wall_seconds=10), uid=uid
            )
        return outcome.returncode == 0 and outcome.stdout.strip() == "ok"

    def slot_uid(self, slot: int, *, server: bool = False) -> int | None:
        """The user that runs programs of worker ``slot`` (``server``: the slot's fork server),
        or None to keep the harness's own."""
        if not self.drop_to_slot_users:
            return None
        if not 0 <= slot < UID_BLOCK // 2:
            raise GeexError(f"at most {UID_BLOCK // 2} workers")
        return self._uid_base + 2 * slot + int(server)

    @cached_property
    def _uid_base(self) -> int:
        """The first user of a block no other evaluation holds (the lock lives as long as
        this Sandbox; the kernel drops it when the process dies)."""
        _UID_LOCKS.mkdir(mode=0o755, exist_ok=True)
        for block in range(4096):
            lock = open(_UID_LOCKS / f"{block}.lock", "a+")  # noqa: SIM115 (held open)
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                lock.close()
                continue
            lock.truncate(0)
            lock.write(f"{os.getpid()}\n")
            lock.flush()
            self._uid_lock = lock
            return SLOT_UID_BASE + block * UID_BLOCK
        raise GeexError(f"every block of sandbox users in {_UID_LOCKS} is taken")

    @cached_property
    def _own_processes(self) -> int:
        """Processes and threads of our user now: without a user of its own a sandbox shares
        the user's process count, so its limit is set this far above it."""
        return _tasks_of_uid(os.getuid())

    def run(
        self,
        argv: Sequence[str],
        workdir: Path,
        limits: Limits,
        *,
        uid: int | None = None,
        env: Mapping[str, str] | None = None,
        writable: Sequence[Path] = (),
    ) -> RunOutcome:
        """Run ``argv`` in ``workdir`` (the only writable place besides ``writable``).

        ``uid``: the sandbox user (``slot_uid``) that owns ``workdir``, or None to run as the
        harness's user (compilers, which run no code of the program).
        """
        workdir = Path(workdir).resolve()
        command, popen_env = self.command(
            argv, workdir, limits, uid=uid, env=env, writable=writable
        )
        start = time.monotonic()
        try:
            proc = subprocess.Popen(
                command,
                cwd=workdir,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
                env=popen_env,
            )
        except OSError as err:
            return RunOutcome(None, "", f"cannot start {argv[0]}: {err}", 0.0, mode=self.mode)
        try:
            stdout, stderr, timed_out, exceeded = _collect(
                proc, start + limits.wall_seconds, limits.output_bytes
            )
        finally:
            self._kill(proc, uid)
        return RunOutcome(
            proc.returncode,
            stdout.decode("utf-8", "replace"),
            stderr.decode("utf-8", "replace"),
            time.monotonic() - start,
            timed_out=timed_out,
            output_exceeded=exceeded,
            mode=self.mode,
        )

    def command(
        self,
        argv: Sequence[str],
        workdir: Path,
        limits: Limits,
        *,
        uid: int | None = None,
        env: Mapping[str, str] | None = None,
        writable: Sequence[Path] = (),
    ) -> tuple[list[str], dict[str, str]]:
        """The wrapped command line and the environment to start it with, for callers that
        keep a sandboxed process running (they must start it in a new session and kill it)."""
        workdir = Path(workdir).resolve()
        limits = self._adjust_process_limit(limits, uid)
        environment = self._environment(workdir, env)
        command = self._wrap(list(argv), workdir, limits, uid, environment, writable)
        return command, environment if self.mode != "bwrap" else {"PATH": _PATH}

    def _adjust_process_limit(self, limits: Limits, uid: int | None) -> Limits:
        if limits.processes is None or uid is not None or os.geteuid() == 0:
            return limits
        return replace(limits, processes=limits.processes + self._own_processes)

    @staticmethod
    def _environment(workdir: Path, extra: Mapping[str, str] | None) -> dict[str, str]:
        env = {
            "PATH": _PATH,
            "HOME": str(workdir),
            "TMPDIR": str(workdir),
            "LANG": "C.UTF-8",
            "LC_ALL": "C.UTF-8",
        }
        env.update(extra or {})
        return env

    def _wrap(
        self,
        argv: list[str],
        workdir: Path,
        limits: Limits,
        uid: int | None,
        env: dict[str, str],
        writable: Sequence[Path],
    ) -> list[str]:
        limited = ["prlimit", *limits.prlimit_args(), "--", *argv]
        as_user = (
            [
                "setpriv",
                f"--reuid={uid}",
                f"--regid={uid}",
                "--clear-groups",
                "--no-new-privs",
                "--",
            ]
            if uid is not None
            else []
        )
        if self.mode == "bwrap":
            command = [
                "bwrap",
                "--ro-bind", "/", "/",
                "--dev", "/dev",
                "--size", str(16 << 20), "--tmpfs", "/dev/shm",
                "--remount-ro", "/dev",
                "--proc", "/proc",
                "--bind", str(workdir), str(workdir),
            ]  # fmt: skip
            for path in writable:
                command += ["--bind", str(path), str(path)]
            command += [
                "--chdir",
                str(workdir),
                "--unshare-all",
                "--die-with-parent",
                "--new-session",
            ]
            command += ["--clearenv"]
            for key, value in env.items():
                command += ["--setenv", key, value]
            return [*as_user, *command, "--", *limited]
        if self.mode == "unshare":
            namespaces = [
                "--net",
                "--pid",
                "--ipc",
                "--uts",
                "--fork",
                "--kill-child",
                "--mount-proc",
            ]
            if os.geteuid() != 0:
                namespaces = ["--user", "--map-root-user", *namespaces]
            return ["unshare", *namespaces, "--", *as_user, *limited]
        return [*as_user, *limited]

    def _kill(self, proc: subprocess.Popen, uid: int | None) -> None:
        """End everything the run started: its process group (in bwrap, the namespace dies
        with it), then every process of a sandbox user, which catches programs that left the
        group in the weaker modes."""
        _signal_group(proc.pid)
        if proc.poll() is None:
            proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)
        if uid is not None:
            for _ in range(200):
                if not _kill_user_processes(uid):
                    break
                time.sleep(0.005)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


_WEAKER = {
    "unshare": "sandbox mode 'unshare': bubblewrap is unusable here, so programs see the "
    "real file system (they can write wherever their user may, e.g. /tmp); network and "
    "process isolation and resource limits still apply",
    "rlimits": "sandbox mode 'rlimits': neither bubblewrap nor unshare works here, so "
    "programs are only held by resource limits: no file-system, network or process isolation",
}


def _signal_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _pids_of_uid(uid: int, *, living: bool = False) -> list[int]:
    pids = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            if entry.stat().st_uid != uid:
                continue
            if living:
                with open(f"/proc/{entry.name}/stat", "rb") as stat:
                    if stat.read().rpartition(b")")[2].split()[0] == b"Z":
                        continue
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        pids.append(int(entry.name))
    return pids


def _tasks_of_uid(uid: int) -> int:
    total = 0
    for pid in _pids_of_uid(uid):
        try:
            total += len(os.listdir(f"/proc/{pid}/task"))
        except OSError:
            continue
    return total


def _kill_user_processes(uid: int) -> bool:
    """SIGKILL every living process of ``uid``; True when there were any."""
    pids = _pids_of_uid(uid, living=True)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    return bool(pids)


def _collect(proc: subprocess.Popen, deadline: float, cap: int) -> tuple[bytes, bytes, bool, bool]:
    """Read stdout and stderr until both close, the deadline passes or ``cap`` bytes came.

    Returns (stdout, stderr, timed_out, output_exceeded); the caller kills the process.
    """
    chunks: dict[int, list[bytes]] = {1: [], 2: []}
    total = 0
    selector = selectors.DefaultSelector()
    selector.register(proc.stdout, selectors.EVENT_READ, 1)
    selector.register(proc.stderr, selectors.EVENT_READ, 2)
    timed_out = exceeded = False
    exited_at: float | None = None
    try:
        while selector.get_map():
            now = time.monotonic()
            if now >= deadline:
                timed_out = proc.poll() is None
                break
            if exited_at is None and proc.poll() is not None:
                exited_at = now
            if exited_at is not None and now - exited_at > _GRACE_SECONDS:
                break  # a descendant holds the pipes open; the program itself is done
            wait = min(deadline - now, 0.1 if exited_at is None else _GRACE_SECONDS)
            for key, _ in selector.select(timeout=wait):
                data = os.read(key.fileobj.fileno(), 65536)
                if not data:
                    selector.unregister(key.fileobj)
                    continue
                room = cap - total
                chunks[key.data].append(data[: max(room, 0)])
                total += len(data)
                if total > cap:
                    exceeded = True
                    break
            if exceeded:
                break
        if not timed_out and not exceeded:
            remaining = max(deadline - time.monotonic(), 0.0)
            try:
                proc.wait(timeout=remaining)
            except subprocess.TimeoutExpired:
                timed_out = True
    finally:
        selector.close()
    return b"".join(chunks[1]), b"".join(chunks[2]), timed_out, exceeded
