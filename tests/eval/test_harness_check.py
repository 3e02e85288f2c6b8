"""A broken sandbox stops the evaluation with a harness error instead of failing every program:
checked before judging and after a run of failures, and no verdict of the broken period is kept.
Run: .venv/bin/python -m pytest tests/eval/test_harness_check.py -q"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace

import pytest

import geex.eval.evaluator as evaluator_module
from geex.cli import main
from geex.eval.evaluator import EvalConfig, Evaluator
from geex.eval.fingerprint import CANONICAL
from geex.eval.harness import HarnessError
from geex.eval.run import evaluate
from geex.eval.runners import RunSettings
from geex.eval.sandbox import Sandbox
from tests.conftest import required_program

from .conftest import inline_sample

BREAK_MARK = "the sandbox breaks from here on"


@dataclass
class BreakingSandbox(Sandbox):
    """bubblewrap told to bind a path that does not exist, as when a machine loses a folder
    the sandbox needs: from the start, or from the first program that holds ``BREAK_MARK``."""

    broken: bool = True

    @classmethod
    def detect(cls) -> BreakingSandbox:
        return cls("bwrap")

    def _wrap(self, argv, workdir, *rest):
        command = super()._wrap(argv, workdir, *rest)
        program = workdir / "test.js"
        if program.exists() and BREAK_MARK in program.read_text():
            self.broken = True
        if not self.broken:
            return command
        at = command.index("bwrap") + 1
        return [*command[:at], "--ro-bind", "/nonexistent-geex-folder", "/mnt", *command[at:]]


@pytest.fixture(autouse=True)
def needs_bubblewrap():
    required_program("bwrap", package="bubblewrap")
    required_program("node", "nodejs", package="nodejs")


def test_a_sandbox_that_cannot_start_judges_nothing(capsys, monkeypatch, tmp_path):
    monkeypatch.setattr(evaluator_module, "Sandbox", BreakingSandbox)
    code = main(["eval", "embedded", "--canonical", "--languages", "python", "js",
                 "--limit", "3", "--no-progress", "--out", str(tmp_path)])  # fmt: skip
    _, err = capsys.readouterr()
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "known-good" in err and "Can't find source path /nonexistent-geex-folder" in err
    assert not (tmp_path / "results.jsonl").exists()


def test_a_sandbox_breaking_midway_keeps_only_verdicts_proven_before(tmp_path):
    def js(completion_id, body):
        sample = inline_sample("js", "function one() {\n", body, "if (one() !== 1) throw 1;\n")
        return replace(sample, completion_id=completion_id)

    passing, failing = "  return 1;\n}\n", "  return 2;\n}\n"
    samples = [js(i, passing) for i in range(3)] + [js(3, failing), js(4, failing)]
    samples += [js(5, f"  return 1; // {BREAK_MARK}\n}}\n")]
    samples += [js(i, passing) for i in range(6, 14)]
    sandbox = BreakingSandbox("bwrap", broken=False)
    config = EvalConfig(workers=1, settings=RunSettings(timeout=5.0))
    with Evaluator(config, sandbox=sandbox) as evaluator, pytest.raises(HarnessError) as raised:
        evaluate(evaluator, [samples[0].task], samples, generator=CANONICAL, out_dir=tmp_path)
    assert "known-good JavaScript program" in str(raised.value)
    kept = [json.loads(x) for x in (tmp_path / "results.jsonl").read_text().splitlines()]
    # The failures before the break were not vouched for by a later pass: judged next time.
    assert [(r["completion_id"], r["verdict"]) for r in kept] == [(i, "passed") for i in range(3)]


def test_prepare_reports_a_broken_sandbox_per_language(capsys, monkeypatch):
    monkeypatch.setattr(evaluator_module, "Sandbox", BreakingSandbox)
    code = main(["eval", "prepare", "--languages", "python", "js"])
    out, err = capsys.readouterr()
    assert code == 1 and "Traceback" not in err
    assert "python      broken:" in out and "javascript  broken:" in out
    assert "ready" not in out
