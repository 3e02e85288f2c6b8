"""Damaged samples files and benchmark files give one line naming the file, the line and what
is wrong (or, for a lone surrogate in a generation, a warning and a correct result), never a
traceback. Run: .venv/bin/python -m pytest tests/eval/test_bad_input.py -q"""

from __future__ import annotations

import gzip
import json
import subprocess
import sys

import pytest

from geex.eval.problems import load_embedded

EVAL = [sys.executable, "-m", "geex", "eval"]
PROBLEMS = load_embedded(["python"])[:2]


def geex_eval(*args):
    return subprocess.run([*EVAL, *args, "--no-progress"], capture_output=True, text=True)


def assert_one_line_error(done, *says):
    assert done.returncode != 0
    assert "Traceback" not in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    for words in says:
        assert words in done.stderr, done.stderr


def sample_line(problem, generation=None):
    generation = problem.canonical_solution if generation is None else generation
    return json.dumps({"task_id": problem.task_id, "generation": generation}) + "\n"


GOOD = sample_line(PROBLEMS[0])


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (GOOD + '["Geex-Python/1", "    return 1\\n"]\n', ":2: expected a JSON object, got a JSON array"),
        (GOOD + '"    return 1\\n"\n', ":2: expected a JSON object, got a JSON string"),
        (GOOD.encode() + b'{"task_id": "Geex-Python/1", "generation": "\xff"}\n', ":2: not UTF-8 text"),
        ("", "holds no samples"),
    ],
    ids=["list", "string", "invalid-utf8", "empty"],
)  # fmt: skip
def test_damaged_samples_file(tmp_path, content, says):
    samples = tmp_path / "samples.jsonl"
    if isinstance(content, bytes):
        samples.write_bytes(content)
    else:
        samples.write_text(content)
    done = geex_eval("embedded", "--samples", str(samples), "--languages", "python")
    assert_one_line_error(done, str(samples), says)


def test_lone_surrogate_in_a_generation_is_judged_with_a_warning(tmp_path):
    samples = tmp_path / "samples.jsonl"
    # JSON may spell half of a character pair; the second sample is right but for a comment.
    broken = PROBLEMS[1].canonical_solution.rstrip("\n") + "  # HALF\n"
    samples.write_text(GOOD + sample_line(PROBLEMS[1], broken).replace("HALF", "\\ud800"))
    out = tmp_path / "out"
    done = geex_eval("embedded", "--samples", str(samples), "--languages", "python",
                     "--limit", "2", "--out", str(out))  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert f"{samples}:2: the generation of {PROBLEMS[1].task_id} holds a lone surrogate" in (
        done.stderr
    )
    summary = json.loads((out / "summary.json").read_text())
    assert summary["overall"]["pass@k"] == {"pass@1": 1.0}


def record(problem, **changes):
    fields = {"task_id": problem.task_id, "prompt": problem.prompt, "test": problem.test,
              "canonical_solution": problem.canonical_solution}  # fmt: skip
    return json.dumps({**fields, **changes}) + "\n"


FIRST = record(PROBLEMS[0])


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (FIRST + '["Geex-Python/1", "def f():"]\n', ":2: expected a JSON object, got a JSON array"),
        (FIRST + record(PROBLEMS[1], prompt=None), ":2: Geex-Python/1: 'prompt' must be a string, got NoneType"),
        (FIRST + record(PROBLEMS[1], test=123), ":2: Geex-Python/1: 'test' must be a string, got int 123"),
        (FIRST.encode() + b'{"task_id": "Geex-Python/1", "prompt": "\xe9"}\n', ":2: not UTF-8 text"),
        (FIRST + record(PROBLEMS[1], task_id=7), ":2: a Python problem needs a 'task_id' string"),
        (FIRST + record(PROBLEMS[1], prompt="HALF").replace("HALF", "\\udc80"),
         ":2: Geex-Python/1: 'prompt' holds a lone surrogate (\\udc80)"),
    ],
    ids=["list", "prompt-null", "test-number", "invalid-utf8", "task-id-number", "surrogate"],
)  # fmt: skip
def test_damaged_benchmark_rows(tmp_path, content, says):
    path = tmp_path / "humaneval_python.jsonl"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    done = geex_eval("humanevalx", "--data", str(tmp_path), "--canonical")
    assert_one_line_error(done, str(path), says)


@pytest.mark.parametrize("damage", ["cut", "corrupt"])
def test_damaged_gzip_benchmark(tmp_path, damage):
    path = tmp_path / "humaneval_python.jsonl.gz"
    packed = gzip.compress("".join(record(p) for p in load_embedded(["python"])).encode())
    if damage == "cut":
        packed = packed[: len(packed) // 2]
    else:  # bytes in the middle of the deflate stream overwritten
        middle = len(packed) // 2
        packed = packed[:middle] + b"\xff" * 64 + packed[middle + 64 :]
    path.write_bytes(packed)
    done = geex_eval("humanevalx", "--data", str(tmp_path), "--canonical")
    assert_one_line_error(done, f"cannot read {path}", "damaged or cut file")
