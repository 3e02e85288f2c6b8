"""Each language reaches each verdict for the right reason: a correct, a wrong, a broken, a
crashing and a looping completion of the same problem. Run: .venv/bin/python -m pytest tests/eval/test_verdicts.py -q"""

from __future__ import annotations

import re
import signal

import pytest

from geex.eval.backends import Sample
from geex.eval.evaluator import EvalConfig, Evaluator
from geex.eval.problems import load_embedded
from geex.eval.runners import RunSettings
from geex.eval.runners.javascript import JavaScriptRunner
from geex.eval.sandbox import RunOutcome, Sandbox
from geex.eval.tasks import generation_tasks
from geex.eval.verdicts import classify_run

# Completions of the embedded problem 3 (digital root), by language and expected verdict.
COMPLETIONS = {
    "python": {
        "failed": "    return 0\n",
        "compile error": "    return (\n",
        "runtime error": "    raise ValueError('boom')\n",
        "timeout": "    while True:\n        pass\n",
    },
    "cpp": {
        "failed": "    return 0;\n}\n",
        "compile error": "    return n +;\n}\n",
        "runtime error": "    throw 42;\n}\n",
        "timeout": "    volatile long long x = 0;\n    while (true) { x++; }\n}\n",
    },
    "java": {
        "failed": "        return 0;\n    }\n}",
        "compile error": "        return n +;\n    }\n}",
        "runtime error": '        throw new IllegalStateException("boom");\n    }\n}',
        "timeout": "        while (true) { n++; }\n    }\n}",
    },
    "javascript": {
        "failed": "  return 0\n}\n",
        "compile error": "  return n +;\n}\n",
        "runtime error": "  throw new Error('boom')\n}\n",
        "timeout": "  while (true) {}\n}\n",
    },
    "go": {
        "failed": "    return 0\n}\n",
        "compile error": "    return n +\n}\n",
        "runtime error": "    var a []int\n    return a[n]\n}\n",
        "timeout": "    for {\n    }\n}\n",
    },
    "rust": {
        "failed": "    0\n}\n",
        "compile error": "    n +\n}\n",
        "runtime error": '    panic!("boom")\n}\n',
        "timeout": "    loop {}\n}\n",
    },
}


# Correct completions that wait 5 s on their first call: past this file's 2 s limit, within
# the default 10 s one, and the same in runners of both kinds (Python's fork server, a process).
LATE_ID = 9
LATE = {
    "python": "    if not hasattr(digital_root, 'waited'):\n"
    "        digital_root.waited = True\n"
    "        __import__('time').sleep(5)\n",
    "javascript": "  if (!digitalRoot.waited) {\n"
    "    digitalRoot.waited = true\n"
    "    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 5000)\n"
    "  }\n",
}


@pytest.fixture(scope="module")
def results():
    tasks = {
        t.language.key: t for t in generation_tasks(load_embedded()) if t.problem.number == "3"
    }
    samples = []
    for key, by_verdict in COMPLETIONS.items():
        task = tasks[key]
        samples.append(Sample(task, 0, task.problem.canonical_solution))
        samples += [Sample(task, i, text) for i, text in enumerate(by_verdict.values(), 1)]
    for key, wait in LATE.items():
        samples.append(Sample(tasks[key], LATE_ID, wait + tasks[key].problem.canonical_solution))
    config = EvalConfig(workers=2, settings=RunSettings(timeout=2.0))
    with Evaluator(config) as evaluator:
        return {(r.language, r.completion_id): r for r in evaluator.judge(samples)}


@pytest.mark.parametrize("language", list(COMPLETIONS))
def test_verdicts(results, language):
    expected = ["passed", *COMPLETIONS[language]]
    got = [results[(language, i)].verdict for i in range(len(expected))]
    assert got == expected, [results[(language, i)].stderr[-300:] for i in range(len(expected))]


def test_the_configured_timeout_ends_a_run(results):
    """A program that would pass after 5 s times out: the evaluator's 2 s limit, not the
    default, ends a run (the looping completions only prove that some limit does)."""
    for language in LATE:
        result = results[(language, LATE_ID)]
        assert result.verdict == "timeout", (result.detail, result.stderr[-300:])


def outcome(rc, stderr="", **kw):
    return RunOutcome(rc, "", stderr, 0.1, **kw)


def test_classification_of_sandbox_walls():
    never = re.compile(r"(?!)")
    assert classify_run(outcome(1, "MemoryError"), assertion=never)[0] == "sandbox violation"
    assert classify_run(outcome(-signal.SIGXFSZ), assertion=never) == (
        "sandbox violation",
        "file-size limit",
    )
    assert classify_run(outcome(0, output_exceeded=True), assertion=never)[0] == "sandbox violation"
    assert classify_run(outcome(128 + signal.SIGXCPU), assertion=never)[0] == "timeout"
    assert classify_run(outcome(-9, timed_out=True), assertion=never)[0] == "timeout"
    assert classify_run(outcome(134), assertion=never) == ("runtime error", "killed by SIGABRT")


def test_a_node_that_segfaults_hit_the_memory_wall(tmp_path):
    """JavaScript touches no memory itself: node's SIGSEGV is an allocation that failed under
    the address-space limit (a huge output once piled up its write buffers this way in CI).
    Another language's SIGSEGV stays a crash of the program."""
    runner = JavaScriptRunner(Sandbox("rlimits"), tmp_path / "cache", RunSettings())
    assert runner.classify(outcome(-signal.SIGSEGV, "x" * 100)) == (
        "sandbox violation",
        "memory limit (node crashed on a failed allocation)",
    )
    assert runner.classify(outcome(-signal.SIGABRT)) == ("runtime error", "killed by SIGABRT")
    never = re.compile(r"(?!)")
    assert classify_run(outcome(-signal.SIGSEGV), assertion=never) == (
        "runtime error",
        "killed by SIGSEGV",
    )
