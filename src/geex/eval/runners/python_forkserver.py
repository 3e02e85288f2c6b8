"""A warm Python per worker that forks once per program, inside the worker's sandbox.

Every HumanEval-X Python program starts by importing numpy and a dozen other modules, which
costs more than running its tests. The fork server is one bubblewrap sandbox per worker slot
(as the slot's user, its folder the only writable place) running a Python that has imported
them all; for each program it forks a child that moves into the program's folder, lowers
its resource limits, points stdout and stderr at files there and runs ``program.py`` as
``__main__``. When the child ends (or its time is up) the server kills every other process
in the sandbox's PID namespace, so nothing a program starts outlives it. The server makes
itself non-dumpable, so the programs it forks, though of the same user, cannot trace it or
read its memory. A program that kills the server gets a "sandbox violation" and a new one.

Used only in bubblewrap mode: elsewhere "every other process" would mean the user's own.
"""

from __future__ import annotations

import json
import os
import selectors
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path

from geex.eval.programs import PYTHON_PREAMBLE
from geex.eval.sandbox import Limits, RunOutcome, Sandbox, _signal_group

# The server, run with ``python -c``: no file of it has to be readable by the sandbox user.
SERVER = r'''
import ctypes, json, os, resource, signal, sys, time, traceback, types
PRELOAD = %(preload)r
for _name in PRELOAD:
    try:
        __import__(_name)
    except Exception:
        pass
ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE = 0
requests = os.fdopen(os.dup(0), "rb")
answers = os.fdopen(os.dup(1), "wb")
_null = os.open("/dev/null", os.O_RDWR)
os.dup2(_null, 0)
os.dup2(_null, 1)
LIMITS = {"cpu": resource.RLIMIT_CPU, "as": resource.RLIMIT_AS, "nproc": resource.RLIMIT_NPROC,
          "fsize": resource.RLIMIT_FSIZE, "nofile": resource.RLIMIT_NOFILE, "core": resource.RLIMIT_CORE}


def run_program(request):
    os.setsid()
    os.chdir(request["dir"])
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    os.dup2(os.open("stdout.txt", flags, 0o644), 1)
    os.dup2(os.open("stderr.txt", flags, 0o644), 2)
    os.closerange(3, 1 << 16)
    for name, value in request["limits"].items():
        soft, hard = value
        resource.setrlimit(LIMITS[name], (soft, hard))
    sys.argv = ["program.py"]
    sys.path[0] = request["dir"]
    main = types.ModuleType("__main__")
    main.__file__ = "program.py"
    sys.modules["__main__"] = main
    try:
        with open("program.py", encoding="utf-8") as source:
            code = compile(source.read(), "program.py", "exec")
    except SyntaxError as error:
        sys.stderr.write("".join(traceback.format_exception_only(type(error), error)))
        return 1
    try:
        exec(code, main.__dict__)
    except SystemExit as end:
        if end.code is None or isinstance(end.code, int):
            return end.code or 0
        sys.stderr.write(f"{end.code}\n")
        return 1
    except BaseException as error:
        traceback.print_exception(type(error), error, error.__traceback__.tb_next)
        return 1
    try:
        import threading
        threading._shutdown()
    except Exception:
        pass
    return 0


def others():
    """The living processes of the namespace but us and its init."""
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit() and int(name) not in (1, os.getpid()):
            try:
                with open(f"/proc/{name}/stat", "rb") as stat:
                    if stat.read().rpartition(b")")[2].split()[0] != b"Z":
                        found.append(name)
            except (OSError, IndexError):
                pass
    return found


def wipe():
    """Kill every process in the namespace but us (and its init), and reap our children."""
    for _ in range(5000):
        while True:
            try:
                if os.waitpid(-1, os.WNOHANG)[0] == 0:
                    break
            except ChildProcessError:
                break
        if not others():
            return
        try:
            os.kill(-1, signal.SIGKILL)
        except ProcessLookupError:
            pass
        time.sleep(0.001)


for line in requests:
    request = json.loads(line)
    start = time.monotonic()
    pid = os.fork()
    if pid == 0:
        status = 1
        try:
            status = run_program(request)
        finally:
            for stream in (sys.stdout, sys.stderr):
                try:
                    stream.flush()
                except Exception:
                    pass
            os._exit(status)
    deadline = start + request["wall"]
    timed_out, status, pause = False, None, 0.0005
    while True:
        done, wait_status = os.waitpid(pid, os.WNOHANG)
        if done:
            status = os.waitstatus_to_exitcode(wait_status)
            break
        if time.monotonic() >= deadline:
            timed_out = True
            break
        time.sleep(pause)
        pause = min(pause * 2, 0.01)
    seconds = time.monotonic() - start
    wipe()
    answers.write((json.dumps({"status": status, "timed_out": timed_out, "seconds": seconds}) + "\n").encode())
    answers.flush()
'''


class ForkServer:
    """The harness's end of one worker's fork server."""

    def __init__(
        self,
        sandbox: Sandbox,
        interpreter: str,
        slot_dir: Path,
        uid: int | None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.sandbox, self.interpreter, self.slot_dir, self.uid = (
            sandbox,
            interpreter,
            slot_dir,
            uid,
        )
        self.env = env  # PYTHONPATH of the packages ``geex eval prepare --pip`` installed
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        source = SERVER % {"preload": _preload_modules()}
        # The server's own limits; each program gets the run limits from inside.
        limits = Limits(wall_seconds=10**7, cpu_seconds=10**7, memory_bytes=None, processes=None,
                        file_bytes=None, open_files=None)  # fmt: skip
        argv = [self.interpreter, "-B", "-s", "-c", source]
        command, env = self.sandbox.command(argv, self.slot_dir, limits, uid=self.uid, env=self.env)
        self.proc = subprocess.Popen(
            command, cwd=self.slot_dir, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL, start_new_session=True, env=env,
        )  # fmt: skip

    def run(self, workdir: Path, limits: Limits) -> RunOutcome:
        """Run ``workdir/program.py``; stdout and stderr come back from files there."""
        if self.proc is None or self.proc.poll() is not None:
            self.start()
        cpu = limits.cpu_seconds if limits.cpu_seconds is not None else limits.wall_seconds + 1
        request = {
            "dir": str(workdir.resolve()),
            "wall": limits.wall_seconds,
            "limits": _rlimits(limits, int(cpu) + 1),
        }
        start = time.monotonic()
        try:
            self.proc.stdin.write((json.dumps(request) + "\n").encode())
            self.proc.stdin.flush()
            answer = json.loads(self._read_line(time.monotonic() + limits.wall_seconds + 10))
        except (OSError, ValueError, TimeoutError):
            self.stop()
            message = "the program ended the Python fork server"
            return RunOutcome(None, "", message, time.monotonic() - start, mode=self.sandbox.mode)
        stdout, stdout_size = _read_capped(workdir / "stdout.txt", limits.output_bytes)
        stderr, stderr_size = _read_capped(workdir / "stderr.txt", limits.output_bytes)
        return RunOutcome(
            answer["status"],
            stdout,
            stderr,
            answer["seconds"],
            timed_out=answer["timed_out"],
            output_exceeded=stdout_size + stderr_size > limits.output_bytes,
            mode=self.sandbox.mode,
        )

    def _read_line(self, deadline: float) -> bytes:
        data = b""
        with selectors.DefaultSelector() as selector:
            selector.register(self.proc.stdout, selectors.EVENT_READ)
            while not data.endswith(b"\n"):
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not selector.select(timeout=remaining):
                    raise TimeoutError
                chunk = os.read(self.proc.stdout.fileno(), 4096)
                if not chunk:
                    raise OSError("the fork server exited")
                data += chunk
        return data

    def stop(self) -> None:
        if self.proc is not None:
            _signal_group(self.proc.pid)
            self.proc.kill()
            self.proc.wait()
            self.proc.stdin.close()
            self.proc.stdout.close()
            self.proc = None


def _preload_modules() -> list[str]:
    names = []
    for line in PYTHON_PREAMBLE:
        words = line.split()
        names.append(words[1])
    return list(dict.fromkeys(names))


def _rlimits(limits: Limits, cpu: int) -> dict[str, tuple[int, int]]:
    values = {"cpu": (cpu - 1, cpu), "core": (0, 0)}
    for name, value in (("as", limits.memory_bytes), ("nproc", limits.processes),
                        ("fsize", limits.file_bytes), ("nofile", limits.open_files)):  # fmt: skip
        if value is not None:
            values[name] = (value, value)
    return values


def _read_capped(path: Path, cap: int) -> tuple[str, int]:
    try:
        with path.open("rb") as stream:
            data = stream.read(cap)
            size = os.fstat(stream.fileno()).st_size
    except OSError:
        return "", 0
    return data.decode("utf-8", "replace"), size
