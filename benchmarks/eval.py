"""Judging HumanEval-X's canonical solutions: Geex's harness beside a naive run, per language.

The naive run does what the reference harness does: one sample at a time, each compiled and
run from cold by its own processes (``javac`` then ``java`` per program, ``g++`` without a
precompiled header, one ``go test`` per program). The fast run is Geex's default: parallel
workers, a precompiled header for C++, a warm JVM that compiles Java, ``go test`` building
16 programs per call. Both use the same sandbox and the same warm build caches (prepared
before timing, and reported apart), and the script checks that their verdicts are identical.

Reported per language: wall seconds of each run and their ratio (naive / fast, > 1 means
faster), and whether the verdicts are the same. Languages run in turn, the naive run first, so that
both runs of a language see about the same machine; on a shared machine only ratios from the
same run compare.

    python benchmarks/eval.py --data ../shared/data/humaneval-x
    python benchmarks/eval.py --data DIR --languages cpp java --limit 40
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from collections import Counter

from rich.console import Console
from rich.table import Table

from geex.eval.backends import canonical_samples
from geex.eval.evaluator import EvalConfig, Evaluator
from geex.eval.problems import LANGUAGE_ORDER, humanevalx_language, load_problems
from geex.eval.runners import RunSettings
from geex.eval.tasks import generation_tasks

PAPER_LANGUAGES = ("python", "cpp", "java", "javascript", "go")


def judge(samples, *, naive: bool, workers: int) -> tuple[dict[str, str], float]:
    """(verdict per task, wall seconds) of one run."""
    config = EvalConfig(workers=workers, settings=RunSettings(naive=naive))
    with Evaluator(config) as evaluator:
        evaluator.prepare({s.task.language.key for s in samples})
        start = time.perf_counter()
        verdicts = {r.task_id: r.verdict for r in evaluator.judge(samples)}
        wall = time.perf_counter() - start
    return verdicts, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="folder of humaneval_<lang>.jsonl.gz")
    parser.add_argument("--languages", nargs="+", default=list(LANGUAGE_ORDER))
    parser.add_argument("--limit", type=int, help="only the first N problems per language")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()

    keys = [humanevalx_language(name).key for name in args.languages]
    problems = load_problems(args.data, args.languages)
    if args.limit:
        problems = [p for p in problems if int(p.number) < args.limit]

    start = time.perf_counter()
    with Evaluator(EvalConfig()) as evaluator:
        evaluator.prepare(keys)  # build the caches once; both runs then find them warm
    prepare_seconds = time.perf_counter() - start

    console = Console(width=150)
    console.print(
        f"{platform.node()}: {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}; "
        f"{args.workers} workers; caches ready in {prepare_seconds:.1f} s"
    )
    table = Table(title="HumanEval-X canonical solutions: naive vs Geex")
    for column in ("language", "programs", "naive s", "fast s", "ratio", "same verdicts",
                   "verdicts"):  # fmt: skip
        table.add_column(column, justify="left" if column in ("language", "verdicts") else "right")
    totals: dict[str, list[float]] = {"paper": [0.0, 0.0], "all": [0.0, 0.0]}
    for key in keys:
        samples = canonical_samples(generation_tasks(p for p in problems if p.language.key == key))
        naive, naive_wall = judge(samples, naive=True, workers=1)
        fast, fast_wall = judge(samples, naive=False, workers=args.workers)
        counts = Counter(fast.values())
        table.add_row(
            key, str(len(samples)), f"{naive_wall:.1f}", f"{fast_wall:.1f}",
            f"{naive_wall / fast_wall:.1f}x",
            "yes" if naive == fast else f"NO ({sum(naive[t] != fast[t] for t in fast)} differ)",
            ", ".join(f"{v} {n}" for v, n in counts.most_common()),
        )  # fmt: skip
        for name in ("paper", "all") if key in PAPER_LANGUAGES else ("all",):
            totals[name][0] += naive_wall
            totals[name][1] += fast_wall
        console.print(f"  {key}: naive {naive_wall:.1f} s, fast {fast_wall:.1f} s")
    for name, (naive_wall, fast_wall) in totals.items():
        if fast_wall:
            label = "five paper languages" if name == "paper" else "all languages"
            table.add_row(label, "", f"{naive_wall:.1f}", f"{fast_wall:.1f}",
                          f"{naive_wall / fast_wall:.1f}x", "", "")  # fmt: skip
    console.print(table)
    console.print(f"load at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
