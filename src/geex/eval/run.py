"""One evaluation run: judge the samples, resume from and write to an output folder, score.

``evaluate`` takes the samples either as a list (canonical solutions, a samples file) or as a
function from the already-judged (task_id, completion_id) pairs to the samples still to make
(a model backend, which then generates only what an interrupted run lacks).

Resuming keeps a stored verdict only where its fingerprints (``geex.eval.fingerprint``) match
this run's: the same generator and sampling settings, prompt, tests and judge settings. A
stored sample of the same generation but other tests is judged again from its stored text, as
are "unavailable" samples: the package or toolchain they lacked may have been installed since
(``geex eval prepare``). Any other stored result of these tasks is dropped and made afresh.

Verdicts reach ``results.jsonl`` only once the harness is proven to have worked after them
(``geex.eval.harness``); a broken harness stops the run with a ``HarnessError``.
"""

from __future__ import annotations

import itertools
import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from geex.eval.backends import Sample
from geex.eval.code_checks import CodeChecks
from geex.eval.evaluator import Evaluator
from geex.eval.fingerprint import generation_fingerprint
from geex.eval.harness import HarnessWatch
from geex.eval.report import write_reports
from geex.eval.results import ResultsFile, SampleResult, check_results_folder
from geex.eval.scores import DEFAULT_KS, Scores, score
from geex.eval.tasks import Task
from geex.progress import open_bar

log = logging.getLogger(__name__)

# Where results replaced by a later run go, so that no generation is ever deleted.
REPLACED = "results.replaced.jsonl"

SampleSource = Sequence[Sample] | Callable[[set[tuple[str, int]]], Iterable[Sample]]


@dataclass
class EvalRun:
    title: str
    tasks: list[Task]
    results: list[SampleResult]  # in task order, then completion id
    scores: Scores
    seconds: float
    sandbox: str
    resumed: int = 0  # results taken from an earlier, interrupted run
    notes: list[str] = field(default_factory=list)
    # The reference programs' bits per byte under the model (geex.eval.bits_per_byte), when a
    # model that gives log-probabilities made the samples.
    bits_per_byte: dict[str, dict] | None = None


def evaluate(
    evaluator: Evaluator,
    tasks: Sequence[Task],
    samples: SampleSource,
    *,
    generator: Mapping,
    out_dir: str | Path | None = None,
    ks: Sequence[int] = DEFAULT_KS,
    title: str = "Evaluation",
    progress: bool = False,
    expected_samples: int | None = None,
    per_task: int | None = None,
    bits_per_byte: dict[str, dict] | None = None,
) -> EvalRun:
    """Judge ``samples`` of ``tasks``; with ``out_dir``, resume from and write its results.

    ``generator`` names where the samples come from (``geex.eval.fingerprint``: a model and
    its sampling settings, a samples file, the canonical solutions): only stored results of
    the same generator, prompt and tests are resumed. ``per_task``: the samples a model makes
    per task (``--n``); stored samples of higher completion ids stay in the file, out of this
    run, for a later run with a larger n. ``bits_per_byte``: the model's score of the reference
    programs (:mod:`geex.eval.bits_per_byte`), reported beside pass@k.

    A stored result that this run replaces (another generator, or another text for the same
    sample) is first appended to ``results.replaced.jsonl``: a rerun with a forgotten flag
    never deletes generations.
    """
    start = time.monotonic()
    order = {task.task_id: i for i, task in enumerate(tasks)}
    by_id = {task.task_id: task for task in tasks}
    made_by = {t.task_id: generation_fingerprint(generator, t) for t in tasks}
    judged_by = {t.task_id: evaluator.judging_fingerprint(t.problem) for t in tasks}
    if out_dir:
        check_results_folder(Path(out_dir))
    results_file = ResultsFile(Path(out_dir) / "results.jsonl") if out_dir else None
    stored = results_file.load() if results_file else {}
    # Lines of other tasks (another --task or --languages) stay in the file untouched.
    # So do samples beyond this run's n, for a later run with a larger one.
    unrelated = [r for key, r in stored.items() if not _ours(key, order, per_task)]
    ours = {key: r for key, r in stored.items() if _ours(key, order, per_task)}
    same_generation = {k: r for k, r in ours.items() if r.generation_fingerprint == made_by[k[0]]}
    earlier = {
        key: r
        for key, r in same_generation.items()
        if r.judged and r.judging_fingerprint == judged_by[key[0]]
    }
    # Samples of the same generation judged again: "unavailable" ones (the package they lacked
    # may be installed since) and those of changed tests or judge settings.
    again = [
        Sample(by_id[r.task_id], r.completion_id, r.generation)
        for key, r in same_generation.items()
        if key not in earlier
    ]

    if callable(samples):
        kept = dict(earlier)
        todo: Iterable[Sample] = itertools.chain(again, samples(set(kept) | {s.key for s in again}))
        total = expected_samples or (per_task and len(tasks) * per_task)
    else:
        kept = {}
        todo = []
        for sample in samples:
            previous = earlier.get(sample.key)
            if previous is not None and previous.generation == sample.generation:
                kept[sample.key] = previous
            else:
                todo.append(sample)
        total = len(samples)

    replaced = _replaced(ours, same_generation, kept, samples)
    if out_dir and replaced:
        _archive(replaced, Path(out_dir) / REPLACED)

    checks = CodeChecks(tasks)
    checks.mark_missing(kept.values())
    watch = HarnessWatch(evaluator)
    todo = watch.checked_first(todo, {task.language.key for task in tasks})
    fresh: list[SampleResult] = []

    def record(released: list[SampleResult]) -> None:
        fresh.extend(released)
        if results_file:
            for result in released:
                results_file.append(result)

    with _Progress(progress, title, total, done=len(kept)) as bar:
        for result in evaluator.judge(todo):
            result.generation_fingerprint = made_by[result.task_id]
            checks.mark(result)
            record(watch.add(result))
            bar.advance(result)
        record(watch.finish())

    merged = {**kept, **{r.key: r for r in fresh}}
    results = sorted(merged.values(), key=lambda r: (order[r.task_id], r.completion_id))
    run = EvalRun(
        title=title,
        tasks=list(tasks),
        results=results,
        scores=score(results, ks),
        seconds=time.monotonic() - start,
        sandbox=evaluator.sandbox.mode,
        resumed=len(kept),
        bits_per_byte=bits_per_byte,
    )
    if evaluator.sandbox.warning:
        run.notes.append(evaluator.sandbox.warning)
    stale = len(ours) - len(same_generation)
    rejudged = sum(1 for sample in again if same_generation[sample.key].judged)
    reasons = []
    if stale:
        reasons.append(f"{stale} of another model, samples file, sampling or prompt: made afresh")
    if rejudged:
        reasons.append(f"{rejudged} judged with other tests or judge settings: judged again")
    if reasons:
        run.notes.append(f"earlier results in {out_dir} not reused: " + "; ".join(reasons))
    if replaced:
        where = Path(out_dir) / REPLACED
        run.notes.append(f"{len(replaced)} replaced result(s) kept in {where}")
        log.warning("%d earlier result(s) replaced by this run are kept in %s", len(replaced),
                    where)  # fmt: skip
    if out_dir:
        results_file.rewrite([*unrelated, *results])
        write_reports(run, Path(out_dir))
        (Path(out_dir) / "summary.json").write_text(json.dumps(summary(run), indent=2) + "\n")
    return run


def _ours(key: tuple[str, int], order: Mapping[str, int], per_task: int | None) -> bool:
    return key[0] in order and (per_task is None or key[1] < per_task)


def _replaced(
    ours: Mapping, same_generation: Mapping, kept: Mapping, samples: SampleSource
) -> list[SampleResult]:
    """The stored results whose generation this run does not keep: those of another
    generator, and (a samples file) those whose sample is gone or holds another text."""
    if callable(samples):
        return [r for key, r in ours.items() if key not in same_generation]
    texts = {sample.key: sample.generation for sample in samples}
    return [
        r
        for key, r in ours.items()
        if key not in kept and (key not in same_generation or texts.get(key) != r.generation)
    ]


def _archive(results: Sequence[SampleResult], path: Path) -> None:
    """Append ``results`` to ``path``, leaving out lines already there (a run interrupted
    after archiving them)."""
    there = set(path.read_text(encoding="utf-8").splitlines()) if path.exists() else set()
    with path.open("a", encoding="utf-8") as out:
        for result in results:
            line = result.to_json()
            if line not in there:
                out.write(line + "\n")


def summary(run: EvalRun) -> dict:
    def group(g) -> dict:
        return {
            "problems": g.problems,
            "samples": g.samples,
            "judged": g.judged,
            "unavailable": g.unavailable,
            "pass@k": {f"pass@{k}": round(v, 6) for k, v in g.pass_at.items()},
            # Only where a pass@k leaves out problems with fewer than k judged samples.
            "pass@k problems": {f"pass@{k}": n for k, n in g.covered.items() if g.partial(k)},
            "verdicts": dict(g.verdicts),
            **({"exact_match": round(g.exact_match, 6)} if g.exact_match is not None else {}),
            **code_shares(g),
        }

    return {
        "title": run.title,
        "sandbox": run.sandbox,
        "seconds": round(run.seconds, 2),
        "resumed": run.resumed,
        "notes": run.notes,
        "groups": {name: group(g) for name, g in run.scores.groups.items()},
        "overall": group(run.scores.overall),
        "missing_packages": run.scores.overall.missing_package_list(),
        **({"bits_per_byte": run.bits_per_byte} if run.bits_per_byte is not None else {}),
    }


def code_shares(g) -> dict:
    """The shares of samples that parse and that stay in their language, where known."""
    shares = {}
    if g.parse_rate is not None:
        shares["parses"] = round(g.parse_rate, 6)
    if g.stay_rate is not None:
        shares["stays_in_language"] = round(g.stay_rate, 6)
    if g.blank:
        shares["blank"] = g.blank
    if g.language_undecided:
        shares["language_undecided"] = g.language_undecided
    return shares


class _Progress:
    """A progress bar per run, or nothing when not wanted."""

    def __init__(self, enabled: bool, title: str, total: int | None, done: int) -> None:
        self.enabled = enabled
        self.title, self.total, self.done = title, total, done
        self.passed = 0

    def __enter__(self) -> _Progress:
        if self.enabled:
            self.bar = open_bar(self.title, self.total, completed=self.done)
        return self

    def advance(self, result: SampleResult) -> None:
        if self.enabled:
            self.passed += result.passed
            self.bar.update(advance=1, info=f"{self.passed} passed")

    def __exit__(self, *exc) -> None:
        if self.enabled:
            self.bar.close()
