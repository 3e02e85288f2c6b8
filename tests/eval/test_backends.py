"""Where completions come from: a backend's raw output is cut by the stop rules and a resumed
run asks only for missing samples; samples files are read in CodeGeeX's format.
Run: .venv/bin/python -m pytest tests/eval/test_backends.py -q"""

from __future__ import annotations

import json

import pytest

from geex.errors import GeexError
from geex.eval.backends import FunctionBackend, Sampling, generate_samples, read_samples
from geex.eval.problems import load_embedded
from geex.eval.run import evaluate
from geex.eval.tasks import generation_tasks


def answer_key(prompt: str) -> str:
    """A "model" that knows the reference solutions, and rambles on after them."""
    for p in load_embedded(["python", "go"]):
        if prompt.endswith(p.prompt):
            return p.canonical_solution + "\n\ndef unrelated():\n    pass\n}\nfunc main() {}\n"
    raise AssertionError("unknown prompt")


ANSWER_KEY = {"source": "answer_key"}  # the generator's identity in the results' fingerprints


def test_generated_samples_are_cut_and_judged(evaluator, tmp_path):
    tasks = generation_tasks(load_embedded(["python", "go"]))
    backend = FunctionBackend(answer_key)

    def samples(done):
        return generate_samples(backend, tasks, Sampling(n=2), done=done)

    run = evaluate(evaluator, tasks, samples, generator=ANSWER_KEY, out_dir=tmp_path)
    assert len(run.results) == 40
    assert all(r.passed for r in run.results), [r.stderr for r in run.results if not r.passed]
    assert (
        "unrelated" not in run.results[0].generation
        and "func main" not in run.results[-1].generation
    )
    assert run.scores.overall.pass_at == {1: 1.0}

    calls = []
    backend.complete = lambda prompt: calls.append(prompt) or answer_key(prompt)
    again = evaluate(evaluator, tasks, samples, generator=ANSWER_KEY, out_dir=tmp_path)
    assert calls == [] and again.resumed == 40


def test_generate_only_missing(tmp_path):
    tasks = generation_tasks(load_embedded(["python"]))[:2]
    seen = []
    backend = FunctionBackend(lambda p: seen.append(p) or "    return 1\n")
    done = {(tasks[0].task_id, 0), (tasks[0].task_id, 1), (tasks[1].task_id, 0)}
    out = list(generate_samples(backend, tasks, Sampling(n=2), done=done))
    assert [(s.task.task_id, s.completion_id) for s in out] == [(tasks[1].task_id, 1)]
    assert len(seen) == 1


def test_read_samples_numbers_completions_and_rejects_duplicates(tmp_path):
    tasks = generation_tasks(load_embedded(["python"]))
    path = tmp_path / "s.jsonl"
    lines = [{"task_id": "Geex-Python/0", "generation": "a"}, {"task_id": "Geex-Python/0", "generation": "b"},
             {"task_id": "Geex-Python/1", "completion": "c", "completion_id": 4}]  # fmt: skip
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    samples = read_samples(path, tasks)
    assert [(s.task.task_id, s.completion_id, s.generation) for s in samples] == [
        ("Geex-Python/0", 0, "a"), ("Geex-Python/0", 1, "b"), ("Geex-Python/1", 4, "c"),
    ]  # fmt: skip
    path.write_text(json.dumps(lines[2]) + "\n" + json.dumps(lines[2]) + "\n")
    with pytest.raises(GeexError, match="twice"):
        read_samples(path, tasks)
    path.write_text(json.dumps({"task_id": "Geex-Rust/0", "generation": "x"}) + "\n")
    # Lines of tasks left out of the run (--languages) are skipped, but all of them is an
    # error: a run that judges nothing would report an empty table and succeed.
    with pytest.raises(GeexError, match="none of its 1 sample.s. is of a task this run judges"):
        read_samples(path, tasks, other_task_ids={"Geex-Rust/0"})
