"""A resumed evaluation reuses only verdicts of the same generator, sampling, prompt and tests:
anything else stored in the folder is judged afresh.
Run: .venv/bin/python -m pytest tests/eval/test_resume_fingerprint.py -q"""

from __future__ import annotations

import dataclasses
import gzip
import json
import subprocess
import sys

from geex.eval.backends import FunctionBackend, Sampling, generate_samples
from geex.eval.fingerprint import model_generator
from geex.eval.problems import load_embedded
from geex.eval.run import evaluate
from geex.eval.tasks import generation_tasks

EVAL = [sys.executable, "-m", "geex", "eval"]


def geex_eval(*args):
    done = subprocess.run([*EVAL, *args, "--no-progress"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    return done


def lines(out_dir):
    return [json.loads(x) for x in (out_dir / "results.jsonl").read_text().splitlines()]


def test_canonical_verdicts_are_not_reused_for_a_model(checkpoint, tmp_path):
    out = tmp_path / "out"
    common = ["embedded", "--languages", "python", "--limit", "3", "--out", str(out)]
    geex_eval(*common, "--canonical")
    geex_eval(*common, "--model", str(checkpoint), "--device", "cpu", "--max-new-tokens", "16")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["resumed"] == 0
    assert summary["overall"]["pass@k"]["pass@1"] < 1  # a random model, not the reference
    canonical = {p.task_id: p.canonical_solution for p in load_embedded(["python"])}
    assert all(r["generation"] != canonical[r["task_id"]] for r in lines(out))
    assert any("not reused: 3 of another model" in note for note in summary["notes"])


def write_benchmark(folder, test):
    folder.mkdir(exist_ok=True)
    problems = load_embedded(["python"])[:2]
    with gzip.open(folder / "humaneval_python.jsonl.gz", "wt") as out:
        for p in problems:
            record = {"task_id": p.task_id, "prompt": p.prompt, "declaration": p.declaration,
                      "canonical_solution": p.canonical_solution, "test": test or p.test}  # fmt: skip
            out.write(json.dumps(record) + "\n")


def test_changed_benchmark_tests_are_judged_again(tmp_path):
    data, out = tmp_path / "data", tmp_path / "out"
    common = ["humanevalx", "--data", str(data), "--canonical", "--out", str(out)]
    write_benchmark(data, test="")
    geex_eval(*common)
    assert {r["verdict"] for r in lines(out)} == {"passed"}
    write_benchmark(data, test="assert False, 'the benchmark changed'\n")
    done = subprocess.run([*EVAL, *common, "--no-progress"], capture_output=True, text=True)
    assert "Traceback" not in done.stderr
    assert {r["verdict"] for r in lines(out)} == {"failed"}
    assert json.loads((out / "summary.json").read_text())["resumed"] == 0


def test_lines_without_fingerprints_are_judged_again(tmp_path):
    common = ["embedded", "--canonical", "--languages", "python", "--limit", "2"]
    geex_eval(*common, "--out", str(tmp_path))
    old = [{k: v for k, v in r.items() if not k.endswith("fingerprint")} for r in lines(tmp_path)]
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in old))
    geex_eval(*common, "--out", str(tmp_path))
    assert json.loads((tmp_path / "summary.json").read_text())["resumed"] == 0
    assert all(r["generation_fingerprint"] and r["judging_fingerprint"] for r in lines(tmp_path))


def test_a_changed_samples_file_is_judged_afresh(tmp_path):
    problems = load_embedded(["python"])[:2]
    samples = tmp_path / "samples.jsonl"
    lines_of = [{"task_id": p.task_id, "generation": p.canonical_solution} for p in problems]
    samples.write_text("".join(json.dumps(x) + "\n" for x in lines_of))
    common = ["embedded", "--samples", str(samples), "--languages", "python", "--limit", "2",
              "--out", str(tmp_path / "out")]  # fmt: skip
    geex_eval(*common)
    geex_eval(*common)
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["resumed"] == 2
    with samples.open("a") as more:  # the same two samples, in another file
        more.write(json.dumps({**lines_of[0], "completion_id": 1, "generation": "  pass\n"}))
    geex_eval(*common)
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["resumed"] == 0


def test_other_sampling_settings_generate_again_and_other_tests_only_judge_again(
    evaluator, tmp_path
):
    problems = load_embedded(["python"])[:2]
    asked = []
    backend = FunctionBackend(lambda prompt: asked.append(prompt) or "    return None\n")

    def run(tasks, sampling):
        def samples(done):
            return generate_samples(backend, tasks, sampling, done=done)

        generator = model_generator("test", "answers None", sampling)
        return evaluate(evaluator, tasks, samples, generator=generator, out_dir=tmp_path)

    greedy, hot = Sampling(), Sampling(temperature=0.8)
    tasks = generation_tasks(problems)
    assert run(tasks, greedy).resumed == 0 and len(asked) == 2
    assert run(tasks, greedy).resumed == 2 and len(asked) == 2
    assert run(tasks, hot).resumed == 0 and len(asked) == 4  # other settings: made afresh

    passing = [dataclasses.replace(p, test="assert True\n") for p in problems]
    rerun = run(generation_tasks(passing), hot)
    assert rerun.resumed == 0 and len(asked) == 4  # judged again from the stored text
    assert [r.verdict for r in rerun.results] == ["passed", "passed"]
    assert any("2 judged with other tests" in note for note in rerun.notes)
