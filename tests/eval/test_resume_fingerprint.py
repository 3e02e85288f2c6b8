"""A resumed evaluation reuses only verdicts of the same generator, sampling, prompt and tests:
anything else stored in the folder is judged afresh.
Run: .venv/bin/python -m pytest tests/eval/test_resume_fingerprint.py -q"""

from __future__ import annotations

import dataclasses
import gzip
import json
import os
import shutil
import subprocess
import sys

from geex.eval import fingerprint
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


def test_only_the_changed_samples_of_a_samples_file_are_judged_afresh(tmp_path):
    problems = load_embedded(["python"])[:2]
    samples = tmp_path / "samples.jsonl"
    lines_of = [{"task_id": p.task_id, "generation": p.canonical_solution} for p in problems]
    samples.write_text("".join(json.dumps(x) + "\n" for x in lines_of))
    out = tmp_path / "out"
    common = ["embedded", "--languages", "python", "--limit", "2", "--out", str(out)]
    geex_eval(*common, "--samples", str(samples))
    geex_eval(*common, "--samples", str(samples))
    assert json.loads((out / "summary.json").read_text())["resumed"] == 2
    with samples.open("a") as more:  # one sample more: the two there are reused
        more.write(json.dumps({**lines_of[0], "completion_id": 1, "generation": "  pass\n"}))
    geex_eval(*common, "--samples", str(samples))
    assert json.loads((out / "summary.json").read_text())["resumed"] == 2
    assert len(lines(out)) == 3
    moved = tmp_path / "elsewhere.jsonl"  # another path, another sample's text changed
    changed = {**lines_of[1], "generation": "    return None\n"}
    moved.write_text("".join(json.dumps(x) + "\n" for x in [lines_of[0], changed]))
    geex_eval(*common, "--samples", str(moved))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["resumed"] == 1
    by_task = {r["task_id"]: r for r in lines(out)}
    assert by_task[problems[1].task_id]["generation"] == "    return None\n"
    replaced = (out / "results.replaced.jsonl").read_text().splitlines()
    assert sorted((json.loads(x)["task_id"], json.loads(x)["completion_id"]) for x in replaced) == [
        (problems[0].task_id, 1), (problems[1].task_id, 0)
    ]  # fmt: skip


def test_results_replaced_by_another_generator_are_kept_verbatim(tmp_path):
    out = tmp_path / "out"
    common = ["embedded", "--languages", "python", "--limit", "2", "--out", str(out)]
    geex_eval(*common, "--canonical")
    canonical = (out / "results.jsonl").read_text().splitlines()
    samples = tmp_path / "samples.jsonl"
    problems = load_embedded(["python"])[:2]
    samples.write_text("".join(json.dumps({"task_id": p.task_id, "generation": "  pass\n"})
                               + "\n" for p in problems))  # fmt: skip
    done = geex_eval(*common, "--samples", str(samples))
    assert (out / "results.replaced.jsonl").read_text().splitlines() == canonical
    assert "2 replaced result(s) kept in" in done.stdout.replace("\n", " ")
    notes = json.loads((out / "summary.json").read_text())["notes"]
    assert any("2 replaced result(s) kept in" in note for note in notes)
    assert {r["generation"] for r in lines(out)} == {"  pass\n"}


def test_a_model_moved_or_run_on_another_device_is_reused(checkpoint, tmp_path):
    out, moved = tmp_path / "out", tmp_path / "moved-model"
    common = ["embedded", "--languages", "python", "--limit", "2", "--out", str(out),
              "--max-new-tokens", "16"]  # fmt: skip
    geex_eval(*common, "--model", str(checkpoint), "--device", "cpu")
    assert json.loads((out / "model_digests.json").read_text())  # each file's digest, kept
    shutil.copytree(checkpoint, moved)
    (moved / ".git").mkdir()
    (moved / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (moved / "README.md").write_text("a tiny model\n")
    geex_eval(*common, "--model", str(moved), "--device", "auto")
    assert json.loads((out / "summary.json").read_text())["resumed"] == 2


def test_a_file_digest_is_read_again_only_when_the_file_changes(tmp_path):
    weights = tmp_path / "model" / "model.safetensors"
    weights.parent.mkdir()
    weights.write_bytes(b"weights")
    cache_file = tmp_path / "out" / "model_digests.json"
    first = fingerprint.folder_digest(weights.parent, fingerprint.DigestCache(cache_file))
    entries = json.loads(cache_file.read_text())
    (entry,) = entries.values()
    entry["sha256"] = "0" * 64  # what a rerun finds in the cache is trusted, not read again
    cache_file.write_text(json.dumps(entries))
    assert fingerprint.folder_digest(weights.parent, fingerprint.DigestCache(cache_file)) != first
    os.utime(weights, ns=(1, 1))  # a file that changed is read again
    assert fingerprint.folder_digest(weights.parent, fingerprint.DigestCache(cache_file)) == first
    assert fingerprint.folder_digest(weights.parent) == first


def test_sampling_flags_are_refused_without_a_model(tmp_path):
    for flags in (["--temperature", "nan"], ["--n", "3"]):
        done = subprocess.run([*EVAL, "embedded", "--canonical", "--languages", "python",
                               "--limit", "1", *flags], capture_output=True, text=True)  # fmt: skip
        assert done.returncode != 0
        assert "Traceback" not in done.stderr
        assert "--canonical judges the reference solutions" in done.stderr
        assert f"{flags[0]} does not apply" in done.stderr


def test_a_repetition_penalty_of_one_keeps_the_fingerprint_of_results_made_before_it():
    """Results stored before the setting existed have no repetition_penalty in their
    generator; with the penalty off (1), the generator is the same as theirs."""
    before = {"source": "test", "model": {"name": "m"},
              "sampling": {"temperature": 0.8, "top_p": 1.0, "max_new_tokens": 512,
                           "token_healing": True}}  # fmt: skip
    assert (
        model_generator("test", "m", Sampling(n=4, temperature=0.8))["sampling"]
        == before["sampling"]
    )
    assert (
        "repetition_penalty"
        in model_generator("test", "m", Sampling(repetition_penalty=1.1))["sampling"]
    )


def test_a_larger_n_reuses_the_samples_made(evaluator, tmp_path):
    tasks = generation_tasks(load_embedded(["python"])[:2])
    asked = []
    backend = FunctionBackend(lambda prompt: asked.append(prompt) or "    return None\n")

    def run(n):
        sampling = Sampling(n=n, temperature=0.8)

        def samples(done):
            return generate_samples(backend, tasks, sampling, done=done)

        generator = model_generator("test", "answers None", sampling)
        return evaluate(evaluator, tasks, samples, generator=generator, out_dir=tmp_path,
                        per_task=n)  # fmt: skip

    assert run(2).resumed == 0 and len(asked) == 4
    assert run(3).resumed == 4 and len(asked) == 6  # one more sample per task
    smaller = run(2)  # the third samples stay in the file for a later, larger n
    assert smaller.resumed == 4 and len(smaller.results) == 4 and len(asked) == 6
    assert len(lines(tmp_path)) == 6
    assert run(3).resumed == 6 and len(asked) == 6


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
    repeats = Sampling(temperature=0.8, repetition_penalty=1.2)
    assert run(tasks, repeats).resumed == 0 and len(asked) == 6  # a penalty: made afresh


def test_the_dtype_fingerprinted_is_the_one_the_model_was_loaded_in(checkpoint):
    """`--dtype auto` is fp32 on a CPU and bf16 on most GPUs: the flag does not say which."""
    from geex.eval.backends_geex import GeexBackend

    sampling = Sampling(n=1)
    auto = GeexBackend.load(checkpoint, device="cpu", dtype="auto")
    bf16 = GeexBackend.load(checkpoint, device="cpu", dtype="bf16")

    assert fingerprint.loaded_dtype(auto) == "float32"
    assert fingerprint.loaded_dtype(bf16) == "bfloat16"
    made = [
        model_generator("geex", checkpoint, sampling, dtype=fingerprint.loaded_dtype(backend))
        for backend in (auto, bf16)
    ]
    assert made[0] != made[1]
