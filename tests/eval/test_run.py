"""An evaluation writes results.jsonl, summary.json and Markdown/HTML reports, and an
interrupted run resumes from its results: no duplicates, the same final scores.
Run: .venv/bin/python -m pytest tests/eval/test_run.py -q"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from functools import partial

from geex.eval.sandbox import SLOT_UID_BASE, UID_BLOCK, _pids_of_uid
from tests.conftest import settles

COMMAND = [sys.executable, "-m", "geex", "eval", "embedded", "--canonical", "--no-progress",
           "--languages", "python", "javascript", "go", "--workers", "1"]  # fmt: skip


def run_to_completion(out_dir):
    done = subprocess.run([*COMMAND, "--out", str(out_dir)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return json.loads((out_dir / "summary.json").read_text())


def result_keys(out_dir):
    lines = (out_dir / "results.jsonl").read_text().splitlines()
    return [(r["task_id"], r["completion_id"]) for r in map(json.loads, lines)]


def test_interrupted_run_resumes_without_duplicates(tmp_path):
    reference = run_to_completion(tmp_path / "whole")

    out_dir = tmp_path / "interrupted"
    # Sandbox users of their own, so that other evaluations on the machine do not count.
    uid_base = SLOT_UID_BASE + UID_BLOCK * (1000 + os.getpid() % 1000)
    env = {**os.environ, "GEEX_SANDBOX_UID_BASE": str(uid_base)}
    proc = subprocess.Popen([*COMMAND, "--out", str(out_dir)], start_new_session=True, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    results = out_dir / "results.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if results.exists() and len(results.read_text().splitlines()) >= 5:
            break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    judged = len(results.read_text().splitlines())
    assert 5 <= judged < 30
    with results.open("a") as out:
        out.write('{"task_id": "Geex-Python/9", "completion_i')  # a line the kill cut short

    for uid in range(uid_base, uid_base + 4):  # the sandboxes die with their parent
        settles(partial(_pids_of_uid, uid, living=True), [], f"processes of sandbox user {uid}")

    summary = run_to_completion(out_dir)
    keys = result_keys(out_dir)
    assert len(keys) == len(set(keys)) == 30
    assert summary["resumed"] >= judged
    for field in ("groups", "overall"):
        assert json.dumps(summary[field], sort_keys=True) == json.dumps(
            reference[field], sort_keys=True
        )


def test_reports(tmp_path):
    run_to_completion(tmp_path)
    markdown = (tmp_path / "report.md").read_text()
    assert "| Python | 10 | 10 | 100.00 |" in markdown
    assert "| Go | 10 | 10 | 100.00 |" in markdown
    page = (tmp_path / "report.html").read_text()
    assert page.startswith("<!doctype html>") and "<svg" in page and "pass@1" in page
    assert "http" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")  # self-contained
    lines = [json.loads(x) for x in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert {"task_id", "verdict", "program", "stderr", "seconds"} <= set(lines[0])
