"""Proves files holding benchmark prompts or solutions are dropped whatever their whitespace,
ordinary code is kept, and the matched task ids are recorded; run:
pytest tests/data/test_decontaminate.py -q (HumanEval-X tests need ../shared/data/humaneval-x)"""

from __future__ import annotations

import json
import pickle
import random
import string
from pathlib import Path

import pytest
from datatrove.data import Document

import geex
from geex.data.decontaminate import (
    BenchmarkText,
    Decontaminate,
    load_benchmark_texts,
    merge_reports,
)
from geex.errors import ConfigError, GeexError
from geex.eval.problems import load_problems

# A made-up benchmark, so the rule is tested without HumanEval-X.
SOLUTION = """\
def rolling_checksum(blocks, modulus=65521):
    low, high = 1, 0
    for block in blocks:
        for byte in block:
            low = (low + byte) % modulus
            high = (high + low) % modulus
    return (high << 16) | low
"""
PROMPT = '"""Checksum every block of a stream the way zlib\'s adler32 does, by hand."""\n'


@pytest.fixture
def toy_benchmark(tmp_path) -> Path:
    path = tmp_path / "toy.jsonl"
    records = [
        {"task_id": "Toy/0", "prompt": PROMPT, "canonical_solution": SOLUTION},
        {"task_id": "Toy/1", "solution": "    return sorted(set(xs))\n"},
        {"text": "print('a text without a task id, long enough to be looked for at all')"},
    ]
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    return path


def reindent(text: str, prefix: str = "\t\t") -> str:
    """The same code moved into a class body, with tabs and extra spaces around operators."""
    lines = [prefix + line.strip().replace("=", " = ") for line in text.splitlines()]
    return "\n".join(lines) + "\n"


def doc(text: str, path: str = "src/module.py") -> Document:
    return Document(text, path, metadata={"path": path, "language": "python"})


# --- benchmark loading ------------------------------------------------------------------------


def test_jsonl_benchmark_texts(toy_benchmark):
    texts = load_benchmark_texts(str(toy_benchmark))
    assert {(t.task_id, t.field) for t in texts} == {
        ("Toy/0", "prompt"),
        ("Toy/0", "canonical_solution"),
        ("Toy/0", "prompt+solution"),
        ("Toy/1", "solution"),
        ("toy/3", "text"),  # no task_id: the file's name and the line number
    }
    assert load_benchmark_texts(f"jsonl:{toy_benchmark}") == texts


def test_bad_benchmarks_are_reported(tmp_path):
    with pytest.raises(ConfigError, match="humanevalx:DIR"):
        load_benchmark_texts("mbpp")
    with pytest.raises(GeexError, match="does not exist"):
        load_benchmark_texts(str(tmp_path / "missing.jsonl"))
    empty = tmp_path / "empty.jsonl"
    empty.write_text('{"task_id": "X/0", "answer": 3}\n')
    with pytest.raises(GeexError, match="none of the fields"):
        load_benchmark_texts(str(empty))
    with pytest.raises(ConfigError):
        Decontaminate([])


def test_humanevalx_texts_cover_every_language(humanevalx_dir):
    texts = load_benchmark_texts(f"humanevalx:{humanevalx_dir}")
    problems = load_problems(humanevalx_dir)
    assert {t.task_id for t in texts} == {p.task_id for p in problems}
    by_field = {(t.task_id, t.field): t.text for t in texts}
    for p in problems:
        assert by_field[(p.task_id, "prompt")] == p.prompt
        assert by_field[(p.task_id, "canonical_solution")] == p.canonical_solution
    prefixes = {t.task_id.split("/")[0] for t in texts}
    assert prefixes == {"Python", "CPP", "Java", "JavaScript", "Go", "Rust"}


# --- the rule, on the toy benchmark -------------------------------------------------------------


def test_solution_reindented_in_another_file_is_caught(toy_benchmark):
    block = Decontaminate([str(toy_benchmark)])
    text = "import zlib\n\nclass Stream:\n" + reindent(SOLUTION) + "\nprint(Stream())\n"
    assert block.contaminating_tasks(text) == (["Toy/0"], "exact")


def test_long_partial_overlap_is_caught_as_ngram(toy_benchmark):
    block = Decontaminate([str(toy_benchmark)])
    middle = SOLUTION[SOLUTION.index("low, high") : SOLUTION.index("return")]
    assert len("".join(middle.split())) >= 79
    assert block.contaminating_tasks("x = 1\n" + reindent(middle, "  ")) == (["Toy/0"], "ngram")


def test_short_texts_and_ordinary_code_are_kept(toy_benchmark):
    block = Decontaminate([str(toy_benchmark)])
    assert block.contaminating_tasks("def f(xs):\n    return sorted(set(xs))\n") is None
    for path in ("languages.py", "eval/problems.py", "data/filters.py", "data/pii.py"):
        source = (Path(geex.__file__).parent / path).read_text()
        assert block.contaminating_tasks(source) is None, path


def test_shared_passages_of_79_characters_are_always_caught(tmp_path):
    """The stride guarantee: any 79 shared non-whitespace characters, wherever they start,
    with any whitespace put in; 40 shared characters never are."""
    rng = random.Random(7)
    alphabet = string.ascii_letters + string.digits + "(){}[];:=+-*/<>"
    secret = "".join(rng.choice(alphabet) for _ in range(2000))
    path = tmp_path / "random.jsonl"
    path.write_text(json.dumps({"task_id": "R/0", "canonical_solution": secret}) + "\n")
    block = Decontaminate([str(path)])
    for _ in range(200):
        start = rng.randrange(0, len(secret) - 79)
        passage = secret[start : start + 79]
        spaced = "".join(c + rng.choice(["", "", " ", "\n    ", "\t"]) for c in passage)
        filler = "".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randrange(100)))
        assert block.contaminating_tasks(filler + spaced + filler) == (["R/0"], "ngram")
        short = secret[start : start + 40]
        assert block.contaminating_tasks(filler + short + filler) is None


def test_block_drops_records_and_reports(toy_benchmark, tmp_path):
    report_dir = tmp_path / "report"
    block = Decontaminate([str(toy_benchmark)], report_dir=str(report_dir))
    docs = [
        doc(PROMPT + SOLUTION, "bench/copy.py"),
        doc("import os\nprint(os.sep)\n", "clean.py"),
        doc("# moved\n" + reindent(PROMPT + SOLUTION, "    "), "renamed/elsewhere.py"),
    ]
    kept = list(block.run(iter(docs), rank=3))
    assert [d.id for d in kept] == ["clean.py"]
    assert docs[0].metadata["contaminated_by"] == ["Toy/0"]
    assert docs[2].metadata["contamination"] == "exact"
    assert "contaminated_by" not in docs[1].metadata
    assert block.stats["dropped_contaminated"].total == 2
    assert block.stats["contaminated_exact"].total == 2

    report = json.loads((report_dir / "contamination-00003.json").read_text())
    assert report["tasks"] == ["Toy/0"]
    assert report["task_counts"] == {"Toy/0": 2}
    assert [d["path"] for d in report["documents"]] == ["bench/copy.py", "renamed/elsewhere.py"]
    assert not list(report_dir.glob("*.tmp"))
    assert merge_reports(str(report_dir))["task_counts"] == {"Toy/0": 2}


def test_block_pickles_without_its_index(toy_benchmark):
    block = Decontaminate([str(toy_benchmark)])
    assert block.contaminating_tasks(PROMPT + SOLUTION) is not None  # builds the index
    copy = pickle.loads(pickle.dumps(block))
    assert copy._index is None
    assert copy.contaminating_tasks(PROMPT + SOLUTION) == (["Toy/0"], "exact")


# --- HumanEval-X --------------------------------------------------------------------------------


_BLOCKS: dict[Path, Decontaminate] = {}


@pytest.fixture
def humanevalx_block(humanevalx_dir) -> Decontaminate:
    """One block per folder for the whole module: its index takes a second to build."""
    if humanevalx_dir not in _BLOCKS:
        _BLOCKS[humanevalx_dir] = Decontaminate([f"humanevalx:{humanevalx_dir}"])
    return _BLOCKS[humanevalx_dir]


@pytest.fixture
def problems(humanevalx_dir) -> dict:
    return {p.task_id: p for p in load_problems(humanevalx_dir)}


@pytest.mark.parametrize("task_id", ["Python/0", "CPP/0", "Java/12", "Go/5"])
def test_humanevalx_solution_reindented_is_caught(humanevalx_block, problems, task_id):
    solution = problems[task_id].canonical_solution
    text = "// copied from somewhere\n" + reindent(solution, "\t") + "// end\n"
    tasks, match = humanevalx_block.contaminating_tasks(text)
    assert task_id in tasks and match == "exact"


def test_humanevalx_prompt_in_a_renamed_file_is_caught(humanevalx_block, problems):
    prompt = problems["JavaScript/33"].prompt
    block = humanevalx_block
    text = "/* utils/sort_third.js */\n" + prompt.replace("\n", "\n  ") + "  return l;\n};\n"
    tasks, _ = block.contaminating_tasks(text)
    assert "JavaScript/33" in tasks
    kept = list(block.run(iter([Document(text, "x", metadata={"path": "lib/renamed.js"})])))
    assert kept == []


def test_humanevalx_boilerplate_alone_is_not_contamination(humanevalx_block):
    java = (
        "import java.util.*;\nimport java.lang.*;\n\nclass Solution {\n"
        "    public int triple(int a) {\n        return 3 * a;\n    }\n}\n"
    )
    cpp = (
        "#include<stdio.h>\n#include<vector>\n#include<string>\n#include<algorithm>\n"
        "using namespace std;\n#include<math.h>\n#include<stdlib.h>\n"
        "int twice(int x) { return 2 * x; }\n"
    )
    for text in (java, cpp):
        assert humanevalx_block.contaminating_tasks(text) is None, text


def test_humanevalx_ordinary_code_is_kept(humanevalx_block):
    sources = sorted((Path(geex.__file__).parent).rglob("*.py"))
    assert len(sources) > 20
    for path in sources:
        assert humanevalx_block.contaminating_tasks(path.read_text()) is None, path


def test_benchmark_text_is_a_plain_record():
    assert BenchmarkText("X/1", "code") == BenchmarkText("X/1", "code", "text")
