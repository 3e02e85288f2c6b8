"""Benchmark loading: folders of humaneval_<lang>.jsonl(.gz), the embedded set, clear errors.
Run: .venv/bin/python -m pytest tests/eval/test_problems.py -q"""

from __future__ import annotations

import builtins
import gzip
import json
import subprocess
import sys

import pytest

from geex.errors import GeexError
from geex.eval.problems import load_embedded, load_hub, load_problems
from tests.conftest import required_program


def test_humanevalx_folder_loads_all_six_languages(humanevalx_dir):
    problems = load_problems(humanevalx_dir)
    counts = {}
    for p in problems:
        counts[p.language.key] = counts.get(p.language.key, 0) + 1
    assert counts == {k: 164 for k in ("python", "cpp", "java", "javascript", "go", "rust")}
    go = next(p for p in problems if p.task_id == "Go/0")
    assert set(go.extra) == {"import", "test_setup"}


def test_any_folder_in_the_same_shape(tmp_path):
    record = {"task_id": "Mine/0", "prompt": "def f():\n", "test": "assert f() == 1\n",
              "canonical_solution": "    return 1\n"}  # fmt: skip
    (tmp_path / "mybench_python.jsonl").write_text(json.dumps(record) + "\n\n")
    with gzip.open(tmp_path / "mybench_js.jsonl.gz", "wt") as out:
        out.write(json.dumps({**record, "task_id": "MineJS/0"}) + "\n")
    (tmp_path / "README.md").write_text("not a benchmark")
    problems = load_problems(tmp_path)
    assert [(p.task_id, p.language.key) for p in problems] == [
        ("Mine/0", "python"), ("MineJS/0", "javascript"),
    ]  # fmt: skip
    assert [p.task_id for p in load_problems(tmp_path, ["js"])] == ["MineJS/0"]


def test_clear_errors(tmp_path):
    with pytest.raises(GeexError, match="does not exist"):
        load_problems(tmp_path / "nowhere")
    with pytest.raises(GeexError, match="no benchmark files"):
        load_problems(tmp_path)
    (tmp_path / "humaneval_python.jsonl").write_text('{"task_id": "P/0"}\n')
    with pytest.raises(GeexError, match="lacks the field"):
        load_problems(tmp_path)
    with pytest.raises(GeexError, match="no benchmark file for go"):
        load_problems(tmp_path, ["python", "go"])
    with pytest.raises(GeexError, match="not a HumanEval-X language"):
        load_problems(tmp_path, ["kotlin"])


def test_embedded_set_has_ten_problems_per_language():
    problems = load_embedded()
    assert len(problems) == 60
    assert {p.task_id.split("/")[0] for p in problems} == {
        "Geex-Python", "Geex-CPP", "Geex-Java", "Geex-JavaScript", "Geex-Go", "Geex-Rust",
    }  # fmt: skip
    assert all(p.prompt and p.test and p.canonical_solution for p in problems)


def test_hub_without_datasets_says_what_to_do(monkeypatch):
    real_import = builtins.__import__

    def no_datasets(name, *args, **kwargs):
        if name == "datasets":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_datasets)
    with pytest.raises(GeexError, match="pip install datasets"):
        load_hub(["python"])


def test_a_file_this_user_cannot_read_is_not_called_damaged(tmp_path):
    bwrap = required_program("bwrap", package="bubblewrap")
    samples = tmp_path / "samples.jsonl"
    samples.write_text('{"task_id": "Python/0", "generation": "  pass\\n"}\n')
    samples.chmod(0)
    tmp_path.chmod(0o755)
    # Root reads any file: run as another user, to whom the file is really unreadable.
    command = [bwrap, "--dev-bind", "/", "/", "--unshare-user", "--uid", "1000", "--gid", "1000",
               sys.executable, "-m", "geex", "eval", "embedded", "--samples", str(samples),
               "--languages", "python", "--no-progress"]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    assert f"permission denied for {samples}" in done.stderr
    assert "damaged" not in done.stderr
