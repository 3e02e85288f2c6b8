"""Decontamination: drop files that contain benchmark problems, and list which ones.

A file is contaminated when it contains a benchmark prompt or canonical solution, whole or in
part, whatever its whitespace: the comparison runs on the UTF-8 text with every (ASCII)
whitespace character removed, so re-indenting a solution, changing tabs to spaces,
re-wrapping lines or re-spacing operators (``x=a+b`` / ``x = a + b``) does not hide it; the
file's name plays no part. Lengths below are in bytes of that text, which are characters
for ASCII code.

How: every window of ``ngram`` (default 64) consecutive non-whitespace characters of every
benchmark text, at every position, goes into a set of hashes, built once per worker process.
A file is cut into the same windows every ``stride`` (default 16) characters only, and is
dropped when any of them is in the set. Since the benchmark side has every position, some
window of the file lies wholly inside any shared passage of ``ngram + stride - 1``
characters, so:

- any passage of 79 or more non-whitespace characters shared with a benchmark text is
  always caught, wherever it sits in the file: this is the "long n-gram overlap" rule, and
  it covers the exact (whitespace-normalised) substring match of every prompt and canonical
  solution of that length; passages of 64 to 78 characters are caught with probability
  (length - 63) / 16;
- texts shorter than that are not searched alone. They are one-line solutions such as
  ``return len(string)`` (17 non-whitespace characters), common in ordinary code and no
  evidence of a leak; they are still caught with their prompt or declaration, since
  ``prompt + solution`` and ``declaration + solution`` are indexed too.

Why 64 characters: about 20 tokens, two lines of code. On 122 MB of ordinary code on this
machine (the Python standard library, C headers, Go, Rust crates, Node modules) 32-character
windows matched 63 files and 48-character windows 4 (the alphabet as a string, Go base64
tests), 64 none.

Boilerplate is no evidence of any one problem, so it stays out of the index: import,
include, ``using namespace``, ``package`` and ``use`` lines are dropped from the benchmark
texts before cutting windows (Java's ``import java.util.*;``, C++'s include block, Rust's
``use std::...`` line), and so is any window found in two problems or more (Java's
``class Solution { /**``, shared headers). Problems are told apart by the last part of the
task id, since HumanEval-X numbers a problem the same in every language ("CPP/12",
"Java/12"), whose versions share their description.

Measured with HumanEval-X (984 tasks, 333k windows, built in about a second): each of the
774 canonical solutions of 79 characters or more, re-indented into another file, is caught;
so are 955 of the 984 prompts alone (the others are Rust's short doc comments) and 979 of
984 prompt-plus-solution files; and none of 12,840 ordinary files (161 MB from the five
sources above) is dropped.

What is recorded:

- each drop counts as ``dropped_contaminated``, and as ``contaminated_exact`` (a whole
  benchmark text is in the file) or ``contaminated_ngram`` (a long passage of one);
- a dropped document gets ``metadata["contaminated_by"]`` (sorted task ids) and
  ``metadata["contamination"]`` ("exact" or "ngram"), which an ``exclusion_writer`` keeps;
- with ``report_dir``, each task (rank) writes ``contamination-<rank:05d>.json``:
  ``{"benchmarks": [...], "ngram": 64, "tasks": [task ids], "task_counts": {task: files},
  "documents": [{"id", "path", "language", "task_ids", "match"}]}``, and
  :func:`merge_reports` joins a folder of them for the dataset card.

Benchmarks (:func:`load_benchmark_texts`): ``humanevalx:DIR`` (a folder of
``humaneval_<lang>.jsonl(.gz)`` files, read by ``geex.eval.problems``), ``embedded`` (Geex's
own evaluation set), or a ``.jsonl``/``.jsonl.gz`` file (also ``jsonl:PATH``) of objects with
a ``task_id`` and any of ``prompt``, ``canonical_solution``, ``solution``, ``text``.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from datatrove.data import Document, DocumentsPipeline
from datatrove.io import DataFolderLike, get_datafolder
from datatrove.pipeline.filters.base_filter import BaseFilter
from datatrove.pipeline.writers.disk_base import DiskWriter

from geex.errors import ConfigError, GeexError
from geex.eval.problems import Problem, load_embedded, load_problems, read_jsonl

__all__ = ["BenchmarkText", "Decontaminate", "load_benchmark_texts", "merge_reports"]

_JSONL_FIELDS = ("prompt", "canonical_solution", "solution", "text")
# Lines every program of a language starts with, left out of the index.
_IMPORT_LINES = re.compile(
    r"^[ \t]*(?:#[ \t]*include\b|import\b|from[ \t]+\S+[ \t]+import\b|using[ \t]+namespace\b"
    r"|package\b|use[ \t]+[\w:{]|extern[ \t]+crate\b).*$",
    re.MULTILINE,
)
REPORT_PREFIX = "contamination-"


@dataclass(frozen=True)
class BenchmarkText:
    """One text of one benchmark task: a prompt, a canonical solution, or the two joined."""

    task_id: str
    text: str
    field: str = "text"


def _problem_texts(problems: Iterable[Problem]) -> list[BenchmarkText]:
    texts = []
    for p in problems:
        solution = p.canonical_solution
        for name, text in (
            ("prompt", p.prompt),
            ("canonical_solution", solution),
            # The boundary windows: a short body is still found with its signature.
            ("prompt+solution", p.prompt + solution if solution else ""),
            ("declaration+solution", p.declaration + solution if p.declaration else ""),
        ):
            if text.strip():
                texts.append(BenchmarkText(p.task_id, text, name))
    return texts


def _jsonl_texts(path: Path) -> list[BenchmarkText]:
    if not path.is_file():
        raise GeexError(f"benchmark file {path} does not exist")
    texts = []
    for number, record in enumerate(read_jsonl(path), 1):
        if not isinstance(record, dict):
            raise GeexError(f"{path}:{number}: expected a JSON object")
        task_id = str(record.get("task_id") or f"{path.name.split('.')[0]}/{number}")
        found = {f: record[f] for f in _JSONL_FIELDS if isinstance(record.get(f), str)}
        if not any(v.strip() for v in found.values()):
            raise GeexError(f"{path}:{number}: none of the fields {', '.join(_JSONL_FIELDS)}")
        texts += [BenchmarkText(task_id, v, f) for f, v in found.items() if v.strip()]
        solution = found.get("canonical_solution") or found.get("solution")
        if found.get("prompt") and solution:
            texts.append(BenchmarkText(task_id, found["prompt"] + solution, "prompt+solution"))
    return texts


def load_benchmark_texts(spec: str) -> list[BenchmarkText]:
    """The texts of a benchmark named by ``spec`` (module docstring): ``humanevalx:DIR``,
    ``embedded``, or a JSONL file."""
    kind, sep, rest = spec.partition(":")
    if sep and kind == "humanevalx":
        return _problem_texts(load_problems(rest))
    if spec == "embedded":
        return _problem_texts(load_embedded())
    if sep and kind == "jsonl":
        return _jsonl_texts(Path(rest))
    if spec.endswith((".jsonl", ".jsonl.gz")):
        return _jsonl_texts(Path(spec))
    raise ConfigError(
        f"unknown benchmark {spec!r}: use humanevalx:DIR, embedded, or a .jsonl(.gz) file"
    )


_ASCII_WHITESPACE = b" \t\n\r\x0b\x0c"


def _compact(text: str) -> bytes:
    """The UTF-8 bytes of ``text`` without ASCII whitespace: ``bytes.translate`` does it at
    memory speed, ten times faster than ``"".join(text.split())``."""
    return text.encode("utf-8", "surrogatepass").translate(None, _ASCII_WHITESPACE)


class Decontaminate(BaseFilter):
    """Drop files containing any of ``benchmarks`` (specs of :func:`load_benchmark_texts`);
    see the module docstring for the rule, its numbers and the report."""

    type = "🔻 - FILTER"
    name = "🧪 Decontaminate"

    def __init__(
        self,
        benchmarks: list[str],
        ngram: int = 64,
        report_dir: DataFolderLike | None = None,
        stride: int = 16,
        exclusion_writer: DiskWriter = None,
    ):
        super().__init__(exclusion_writer)
        if isinstance(benchmarks, str):
            benchmarks = [benchmarks]
        if not benchmarks:
            raise ConfigError("Decontaminate needs at least one benchmark")
        if ngram < 16 or not 1 <= stride <= ngram:
            raise ConfigError("Decontaminate: ngram >= 16 and 1 <= stride <= ngram")
        self.benchmarks = list(benchmarks)
        self.ngram = ngram
        self.stride = stride
        self.report_dir = report_dir
        # Read now, so that a wrong path fails before any worker starts.
        self.texts = [t for spec in self.benchmarks for t in load_benchmark_texts(spec)]
        self._index: frozenset[int] | None = None
        # task id -> its texts without whitespace: whole (for the exact test) and as indexed
        self._task_texts: dict[str, tuple[list[bytes], list[bytes]]] = {}
        self._found: list[dict] = []

    def __getstate__(self) -> dict:
        # str hashes are salted per process: a worker rebuilds the index with its own salt.
        state = self.__dict__.copy()
        state["_index"] = None
        return state

    # --- the index ------------------------------------------------------------------------

    def _build_index(self) -> frozenset[int]:
        n = self.ngram
        by_task: dict[str, tuple[list[bytes], list[bytes]]] = {}
        for t in self.texts:
            whole, indexed = by_task.setdefault(t.task_id, ([], []))
            whole.append(_compact(t.text))
            indexed.append(_compact(_IMPORT_LINES.sub("", t.text)))
        by_problem: dict[str, set[bytes]] = {}
        for task, (_, indexed) in by_task.items():
            windows = by_problem.setdefault(task.rsplit("/", 1)[-1], set())
            windows.update(c[i : i + n] for c in indexed for i in range(len(c) - n + 1))
        problems_per_window = Counter(w for windows in by_problem.values() for w in windows)
        self._task_texts = by_task
        return frozenset(hash(w) for w, count in problems_per_window.items() if count == 1)

    def _windows(self, text: str) -> tuple[bytes, list[bytes]]:
        """The text without whitespace, and its windows every ``stride`` characters."""
        compact = _compact(text)
        n = self.ngram
        return compact, [compact[s : s + n] for s in range(0, len(compact) - n + 1, self.stride)]

    def contaminating_tasks(self, text: str) -> tuple[list[str], str] | None:
        """``(task ids, "exact" | "ngram")`` when ``text`` holds benchmark text, else None."""
        if self._index is None:
            self._index = self._build_index()
        compact, windows = self._windows(text)
        if not windows or self._index.isdisjoint(map(hash, windows)):
            return None
        hits = [w for w in windows if hash(w) in self._index]
        tasks = sorted(
            task
            for task, (_, indexed) in self._task_texts.items()
            if any(w in c for w in hits[:32] for c in indexed)
        )
        if not tasks:  # a 64-bit hash collision, not a shared window
            return None
        exact = any(
            c in compact
            for task in tasks
            for c in self._task_texts[task][0]
            if len(c) >= self.ngram
        )
        return tasks, "exact" if exact else "ngram"

    # --- the block ------------------------------------------------------------------------

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        found = self.contaminating_tasks(doc.text)
        if found is None:
            return True
        tasks, match = found
        doc.metadata["contaminated_by"] = tasks
        doc.metadata["contamination"] = match
        self.stat_update(f"contaminated_{match}")
        self._found.append(
            {
                "id": doc.id,
                "path": doc.metadata.get("path"),
                "language": doc.metadata.get("language"),
                "task_ids": tasks,
                "match": match,
            }
        )
        return False, "contaminated"

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        self._found = []
        yield from super().run(data, rank, world_size)
        if self.report_dir is not None:
            self._write_report(rank)

    def _write_report(self, rank: int) -> None:
        counts = Counter(task for d in self._found for task in d["task_ids"])
        report = {
            "benchmarks": self.benchmarks,
            "ngram": self.ngram,
            "tasks": sorted(counts),
            "task_counts": dict(sorted(counts.items())),
            "documents": self._found,
        }
        folder = get_datafolder(self.report_dir)
        name = f"{REPORT_PREFIX}{rank:05d}.json"
        # Written aside and moved into place, so a killed run never leaves half a report.
        with folder.open(name + ".tmp", "w") as f:
            json.dump(report, f, indent=1)
        folder.mv(name + ".tmp", name)


def merge_reports(report_dir: DataFolderLike) -> dict:
    """The reports of all ranks in one: ``{"tasks", "task_counts", "documents"}``."""
    folder = get_datafolder(report_dir)
    counts: Counter[str] = Counter()
    documents: list[dict] = []
    for name in sorted(folder.list_files(glob_pattern=f"{REPORT_PREFIX}*.json")):
        with folder.open(name, "r") as f:
            report = json.load(f)
        counts.update(report.get("task_counts", {}))
        documents += report.get("documents", [])
    return {
        "tasks": sorted(counts),
        "task_counts": dict(sorted(counts.items())),
        "documents": documents,
    }
