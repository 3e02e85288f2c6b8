"""Java: compile ``Main.java`` (tests and ``class Solution``), run ``java -ea Main``.

Speed: compilation goes to a warm JVM per worker (``CompileServer.java``, the JDK's compiler
through ``javax.tools``, itself sandboxed), instead of a cold ``javac`` per program; the tests
run in a fresh JVM each, started with flags that cut start-up time (serial GC, the client
compiler only, no perf data file).
"""

from __future__ import annotations

import hashlib
import os
import re
import selectors
import subprocess
import threading
import time
from importlib import resources
from pathlib import Path
from typing import ClassVar

from geex.eval.runners.base import Job, Runner
from geex.eval.sandbox import Limits, RunOutcome, _signal_group
from geex.eval.verdicts import Judgement

_FAST_START = ["-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-XX:-UsePerfData", "-Xshare:auto"]


class _CompileServer:
    """One sandboxed JVM that compiles on request; restarted when it hangs or dies."""

    def __init__(self, runner: JavaRunner, classes: Path, jobs_root: Path) -> None:
        self.runner = runner
        self.classes = classes
        self.jobs_root = jobs_root
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        runner = self.runner
        limits = Limits(
            wall_seconds=10**7, memory_bytes=runner.jvm_address_space, processes=None,
            file_bytes=1 << 30, open_files=4096,
        )  # fmt: skip
        argv = ["java", runner.heap, *_FAST_START, "-cp", str(self.classes), "CompileServer"]
        command, env = runner.sandbox.command(argv, self.classes, limits, writable=[self.jobs_root])
        self.proc = subprocess.Popen(
            command, cwd=self.classes, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL, start_new_session=True, env=env,
        )  # fmt: skip

    def compile(self, folder: Path, timeout: float) -> RunOutcome:
        start = time.monotonic()
        if self.proc is None or self.proc.poll() is not None:
            self.start()
        try:
            self.proc.stdin.write(f"{folder}\n".encode())
            self.proc.stdin.flush()
            ok, text = self._answer(start + timeout)
        except (OSError, ValueError, TimeoutError) as err:
            self.stop()
            timed_out = isinstance(err, TimeoutError)
            message = "the compiler ran out of time" if timed_out else f"the compiler died: {err}"
            return RunOutcome(None, "", message, time.monotonic() - start, timed_out=timed_out)
        return RunOutcome(0 if ok else 1, "", text, time.monotonic() - start)

    def _answer(self, deadline: float) -> tuple[bool, str]:
        stream = self.proc.stdout
        header = self._read(stream, deadline, line=True)
        status, _, size = header.decode().strip().partition(" ")
        if status not in ("OK", "ERR"):
            raise OSError(f"unexpected answer {header!r}")
        body = self._read(stream, deadline, size=int(size))
        return status == "OK", body.decode("utf-8", "replace")

    @staticmethod
    def _read(stream, deadline: float, *, line: bool = False, size: int = 0) -> bytes:
        data = b""
        with selectors.DefaultSelector() as selector:
            selector.register(stream, selectors.EVENT_READ)
            while (not data.endswith(b"\n")) if line else len(data) < size:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not selector.select(timeout=remaining):
                    raise TimeoutError
                chunk = os.read(stream.fileno(), 1 if line else size - len(data))
                if not chunk:
                    raise OSError("the compiler exited")
                data += chunk
        return data

    def stop(self) -> None:
        if self.proc is not None:
            _signal_group(self.proc.pid)
            self.proc.kill()
            self.proc.wait()
            for stream in (self.proc.stdin, self.proc.stdout):
                stream.close()
            self.proc = None


class JavaRunner(Runner):
    key = "java"
    tools: ClassVar[dict[str, str]] = {
        "javac": "default-jdk-headless",
        "java": "default-jdk-headless",
    }
    assertion = re.compile(r"AssertionError")

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._servers: dict[int, _CompileServer] = {}
        self._classes: Path | None = None

    @property
    def heap(self) -> str:
        """The JVM's heap limit: half the memory limit. The JVM reserves address space far
        beyond what it uses, so the address-space limit is only a backstop for it."""
        return f"-Xmx{max(self.settings.memory_bytes >> 21, 256)}m"

    @property
    def jvm_address_space(self) -> int:
        return max(self.settings.memory_bytes, 2 << 30) + (4 << 30)

    def _prepare(self) -> None:
        if self.settings.naive:
            return
        source = (resources.files(__package__) / "CompileServer.java").read_text()
        version = subprocess.run(["javac", "-version"], capture_output=True, text=True)
        key = hashlib.sha256((source + version.stdout + version.stderr).encode()).hexdigest()[:16]
        classes = self.cache_dir / f"java-compile-server-{key}"
        if not (classes / "CompileServer.class").exists():
            classes.mkdir(parents=True, exist_ok=True)
            (classes / "CompileServer.java").write_text(source)
            argv = ["javac", f"-J{self.heap}", "-d", "out", "CompileServer.java"]
            limits = self.settings.compile_limits(memory_bytes=self.jvm_address_space)
            outcome = self.sandbox.run(argv, classes, limits)
            if outcome.returncode != 0:
                return  # judged with javac per program: slower, same verdicts
            (classes / "out" / "CompileServer.class").rename(classes / "CompileServer.class")
        self._classes = classes

    def note(self) -> str:
        if self.settings.naive:
            return ""
        return "compile server ready" if self._classes else "javac per program"

    def _server(self, job: Job) -> _CompileServer:
        key = threading.get_ident()
        with self._lock:
            server = self._servers.get(key)
            if server is None:
                server = self._servers[key] = _CompileServer(
                    self, self._classes, job.workdir.parent
                )
        return server

    def judge(self, program: str, job: Job) -> Judgement:
        job.write("Main.java", program)
        if self._classes is not None:
            built = self._server(job).compile(job.workdir.resolve(), self.settings.compile_timeout)
        else:
            limits = self.settings.compile_limits(memory_bytes=self.jvm_address_space)
            argv = ["javac", f"-J{self.heap}", "-encoding", "UTF-8", "Main.java"]
            built = self.sandbox.run(argv, job.workdir, limits)
        if built.returncode != 0:
            return self.compile_failed(built)
        flags = [] if self.settings.naive else _FAST_START
        limits = self.settings.run_limits(memory_bytes=self.jvm_address_space)
        argv = ["java", "-ea", self.heap, *flags, "-cp", ".", "Main"]
        return self.run_tests(argv, job, limits=limits, compile_seconds=built.seconds)

    def close(self) -> None:
        with self._lock:
            for server in self._servers.values():
                server.stop()
            self._servers.clear()
