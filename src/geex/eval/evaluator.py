"""The judge: samples in, verdicts out, in parallel, in the sandbox.

``Evaluator.judge`` assembles each sample's program, hands it to its language's runner on a
pool of worker threads (the work itself happens in sandboxed child processes), and yields a
``SampleResult`` per sample as it finishes, in completion order. Runners that build several
programs at once (Go) get them in batches. Each worker owns a slot: a folder for its jobs and,
when the harness is root, a sandbox user of its own. The evaluator never raises for a
sample: a harness failure becomes an "unavailable" verdict with the reason (a bug in Geex is
logged with its traceback), which the harness checks of ``geex.eval.harness`` turn into an
error that stops the run. A
program that failed for want of a library its benchmark imports is "unavailable" too, naming
the package (``geex.eval.libraries``).
"""

from __future__ import annotations

import itertools
import logging
import os
import shutil
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

from geex.config import option
from geex.errors import GeexError
from geex.eval.backends import Sample
from geex.eval.fingerprint import judge_identity, judging_fingerprint
from geex.eval.libraries import blame_missing_library
from geex.eval.problems import Problem
from geex.eval.programs import assemble
from geex.eval.results import SampleResult, excerpt
from geex.eval.runners import RUNNERS, Job, Runner, RunSettings
from geex.eval.sandbox import Sandbox
from geex.eval.verdicts import UNAVAILABLE, Judgement

log = logging.getLogger(__name__)


def default_cache_dir() -> Path:
    """Where warm compiler caches live: ``GEEX_CACHE_DIR``, else the user's cache folder."""
    if os.environ.get("GEEX_CACHE_DIR"):
        return Path(os.environ["GEEX_CACHE_DIR"]) / "eval"
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "geex" / "eval"


@dataclass
class EvalConfig:
    """How samples are judged; the fields with a flag are ``geex eval`` flags."""

    workers: int = field(default_factory=lambda: os.cpu_count() or 1)
    settings: RunSettings = field(default_factory=RunSettings)
    example_test: bool = option(  # judge with the prompt's examples instead of the hidden tests
        False, help="use the prompt's examples as the tests"
    )
    cache_dir: Path | None = option(None, flag=False)  # GEEX_CACHE_DIR, or the user's cache


class Evaluator:
    """Judges samples; use as a context manager (it owns compile servers and temp folders)."""

    def __init__(self, config: EvalConfig | None = None, sandbox: Sandbox | None = None) -> None:
        self.config = config or EvalConfig()
        if self.config.workers < 1:
            raise GeexError("--workers must be at least 1")
        self.sandbox = sandbox or Sandbox.detect()
        if self.sandbox.warning:
            log.warning(self.sandbox.warning)
        self.cache_dir = Path(self.config.cache_dir or default_cache_dir())
        self._runners: dict[str, Runner] = {}
        self._lock = threading.Lock()
        self._root = Path(tempfile.mkdtemp(prefix="geex-eval-"))
        os.chmod(self._root, 0o711)  # sandbox users must reach their own folders inside
        self._slots = itertools.count()
        self._local = threading.local()
        self._job_ids = itertools.count()
        # Workers live as long as the evaluator: sandboxes started from a worker (compile and
        # fork servers) die with its thread, and each worker keeps its slot.
        self._pool = ThreadPoolExecutor(self.config.workers, thread_name_prefix="geex-judge")

    def __enter__(self) -> Evaluator:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        for runner in self._runners.values():
            runner.close()
        _remove(self._root)

    def runner(self, language_key: str) -> Runner:
        with self._lock:
            runner = self._runners.get(language_key)
            if runner is None:
                cls = RUNNERS.get(language_key)
                if cls is None:
                    raise GeexError(f"no runner for language {language_key!r}")
                runner = cls(self.sandbox, self.cache_dir, self.config.settings)
                self._runners[language_key] = runner
            return runner

    def judging_fingerprint(self, problem: Problem) -> str:
        """The hash of ``problem``'s program and tests and of how this evaluator judges them:
        a stored verdict with another one is judged again (``geex.eval.fingerprint``)."""
        judge = judge_identity(self.config.example_test, self.config.settings, self.sandbox.mode)
        return judging_fingerprint(problem, judge)

    def missing_toolchains(self, language_keys: Iterable[str]) -> dict[str, str]:
        """Language key -> what to install, for the languages that cannot be judged here."""
        missing = {}
        for key in language_keys:
            reason = self.runner(key).missing()
            if reason:
                missing[key] = reason
        return missing

    def prepare(self, language_keys: Iterable[str]) -> None:
        """Warm the caches of these languages now rather than on their first sample."""
        for key in language_keys:
            runner = self.runner(key)
            if runner.missing() is None:
                runner.prepare()

    def judge(self, samples: Iterable[Sample]) -> Iterator[SampleResult]:
        """Judge ``samples`` (read lazily); yield results as they finish."""
        workers = self.config.workers
        pending: dict[str, list[Sample]] = {}
        running: set[Future] = set()

        def submit(unit: list[Sample]) -> None:
            running.add(self._pool.submit(self._judge_unit, unit))

        def drain(block: bool) -> Iterator[SampleResult]:
            nonlocal running
            if not running:
                return
            done, running = wait(running, timeout=None if block else 0, return_when=FIRST_COMPLETED)
            for future in done:
                yield from future.result()

        for sample in samples:
            key = sample.task.language.key
            unit = pending.setdefault(key, [])
            unit.append(sample)
            if len(unit) >= self.runner(key).batch_size:
                submit(pending.pop(key))
            # Keep a bounded number of units in flight, so samples are read lazily.
            while len(running) >= 2 * workers:
                yield from drain(block=True)
            yield from drain(block=False)
        for unit in pending.values():
            submit(unit)
        while running:
            yield from drain(block=True)

    def _slot(self) -> int:
        slot = getattr(self._local, "slot", None)
        if slot is None:
            slot = self._local.slot = next(self._slots)
            folder = self._root / f"slot-{slot}"
            folder.mkdir()
            os.chmod(folder, 0o711)
        return slot

    def _judge_unit(self, unit: list[Sample]) -> list[SampleResult]:
        slot = self._slot()
        runner = self.runner(unit[0].task.language.key)
        start = time.monotonic()
        programs = [
            assemble(
                s.task.problem,
                s.task.program_completion(s.generation),
                example_test=self.config.example_test,
            )
            for s in unit
        ]
        jobs = []
        try:
            missing = runner.missing()
            if missing:
                judgements = [Judgement(UNAVAILABLE, missing)] * len(unit)
            else:
                runner.prepare()
                uid = self.sandbox.slot_uid(slot)
                server_uid = self.sandbox.slot_uid(slot, server=True)
                for _ in unit:
                    workdir = self._root / f"slot-{slot}" / f"job-{next(self._job_ids)}"
                    workdir.mkdir()
                    jobs.append(Job(workdir, uid, server_uid))
                judgements = runner.judge_batch(programs, jobs)
                judgements = [
                    blame_missing_library(sample.task.problem, judgement, runner.lacks_library)
                    for sample, judgement in zip(unit, judgements, strict=True)
                ]
        except GeexError as err:  # the machine, not the program: report it per sample
            judgements = [Judgement(UNAVAILABLE, f"harness error: {err}")] * len(unit)
        except Exception as err:  # a harness bug must not end the run: report it per sample
            log.error("judging %s failed:\n%s", unit[0].task.task_id, traceback.format_exc())
            judgements = [Judgement(UNAVAILABLE, f"harness error: {err!r}")] * len(unit)
        finally:
            for job in jobs:
                _remove(job.workdir)
        elapsed = (time.monotonic() - start) / len(unit)
        return [
            SampleResult(
                task_id=sample.task.task_id,
                completion_id=sample.completion_id,
                language=sample.task.language.key,
                group=sample.task.group,
                verdict=j.verdict,
                detail=j.detail,
                generation=sample.generation,
                program=program,
                stderr=excerpt((j.stderr + ("\n" + j.stdout if j.stdout.strip() else "")).strip()),
                seconds=round(elapsed, 4),
                compile_seconds=round(j.compile_seconds, 4),
                run_seconds=round(j.run_seconds, 4),
                sandbox=self.sandbox.mode,
                missing_package=j.missing_package,
                install=j.install,
                judging_fingerprint=self.judging_fingerprint(sample.task.problem),
                exact_match=sample.task.exact_match(sample.generation),
            )
            for sample, program, j in zip(unit, programs, judgements, strict=True)
        ]


def _remove(folder: Path) -> None:
    """Delete a job folder, whatever modes its program left on what it wrote."""

    def make_writable(function, path, _exc) -> None:
        try:
            os.chmod(os.path.dirname(path), 0o700)
            os.chmod(path, 0o700)
            function(path)
        except OSError:
            pass

    if sys.version_info >= (3, 12):
        shutil.rmtree(folder, onexc=make_writable)
    else:
        shutil.rmtree(folder, onerror=make_writable)
