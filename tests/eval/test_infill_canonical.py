"""`geex eval infill --canonical`: every hole filled with its canonical middle gets its
problem's canonical verdict (all pass but HumanEval-X's known broken problems). Two problems
of every language by default, one of them a known exception; the whole suite is slow-marked.
Run: .venv/bin/python -m pytest tests/eval/test_infill_canonical.py -q [-m slow]"""

from __future__ import annotations

import json

import pytest

from geex.cli import main
from geex.eval.known import expected_canonical

# The first problem of each language and one that exercises its special needs; Java/151
# (needs -ea), JavaScript/112, Go/95 and Rust/50 are known exceptions (geex.eval.known).
SAMPLE = {"Python": [0, 32], "CPP": [0, 22], "Java": [0, 151], "JavaScript": [0, 112],
          "Go": [0, 95], "Rust": [0, 50]}  # fmt: skip


def canonical_infill(capsys, out, *flags) -> tuple[int, list[dict]]:
    code = main(["eval", "infill", "--canonical", "--workers", "2", "--no-progress",
                 "--out", str(out), *flags])  # fmt: skip
    capsys.readouterr()
    lines = (out / "results.jsonl").read_text(encoding="utf-8").splitlines()
    return code, [json.loads(line) for line in lines]


def unexpected(results: list[dict], js_md5: bool) -> dict:
    return {
        r["task_id"]: (r["verdict"], r["detail"], r["stderr"][-300:])
        for r in results
        if r["verdict"] not in expected_canonical(problem_of(r), js_md5=js_md5)
    }


def problem_of(result: dict) -> str:
    return result["task_id"].rsplit("/", 1)[0]


def has_js_md5(evaluator) -> bool:
    return evaluator.runner("javascript").find_module("js-md5") is not None


# Slow (about 20 s); the HumanEval-X sample below judges canonical infills of every language
# in the default suite.
@pytest.mark.slow
def test_embedded_set_every_language_passes(capsys, tmp_path):
    code, results = canonical_infill(
        capsys, tmp_path, "--embedded", "--limit", "3", "--multi-per-problem", "1"
    )
    assert code == 0
    assert {r["language"] for r in results} == {"python", "cpp", "java", "javascript", "go",
                                                "rust"}  # fmt: skip
    assert {r["verdict"] for r in results} == {"passed"}
    assert all(r["exact_match"] is True for r in results)


def test_humanevalx_sample_of_every_language(capsys, tmp_path, humanevalx_dir, evaluator):
    ids = {f"{prefix}/{n}" for prefix, numbers in SAMPLE.items() for n in numbers}
    folder = tmp_path / "data"
    folder.mkdir()
    # The sampled problems only, in a benchmark folder of their own.
    from geex.eval.problems import numbered_records

    for path in humanevalx_dir.glob("humaneval_*.jsonl.gz"):
        kept = [r for _, r in numbered_records(path) if r["task_id"] in ids]
        (folder / path.name.removesuffix(".gz")).write_text(
            "".join(json.dumps(r) + "\n" for r in kept), encoding="utf-8"
        )
    code, results = canonical_infill(
        capsys, tmp_path / "out", "--data", str(folder), "--multi-per-problem", "2"
    )
    assert {problem_of(r) for r in results} == ids
    assert unexpected(results, has_js_md5(evaluator)) == {}
    assert code == 0
    failing = {problem_of(r) for r in results if r["verdict"] != "passed"}
    assert {"JavaScript/112", "Rust/50"} <= failing <= {"JavaScript/112", "Rust/50", "Go/95"}


@pytest.mark.slow
def test_whole_humanevalx(capsys, tmp_path, humanevalx_dir, evaluator):
    code, results = canonical_infill(capsys, tmp_path, "--data", str(humanevalx_dir))
    assert unexpected(results, has_js_md5(evaluator)) == {}
    assert code == 0
    assert len({problem_of(r) for r in results}) == 6 * 164
