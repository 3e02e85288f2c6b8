"""The eval stage: generation on the embedded set and, when given, HumanEval-X, judged
sandboxed; a language whose toolchain is missing is left out with what to install.

The evaluation machinery (numpy, the runners, the model) is imported in :meth:`EvalStage.run`:
``geex run --help`` takes its ``--stage`` choices from the registry that lists this class.
"""

from __future__ import annotations

import dataclasses

from geex.pipeline.benchmarks import TITLES, benchmarks, problems
from geex.pipeline.checks import missing_toolchains
from geex.pipeline.stage import RunContext, Stage
from geex.pipeline.stage_train import TrainStage


class EvalStage(Stage):
    name = "eval"
    description = "generate and judge, sandboxed"
    folder = "eval"  # one folder per benchmark: results.jsonl, summary.json, reports
    reads = (TrainStage.model,)
    writes = (folder,)
    on_changed_settings = "redo"  # judging again is cheap next to training
    redo_note = "evaluation settings changed: evaluating again"

    def describe(self, context: RunContext) -> str:
        names = benchmarks(context.config.eval)
        return f"{self.description}: {', '.join(names)}" if names else "nothing to evaluate"

    def settings(self, context: RunContext) -> dict:
        return {k: v for k, v in dataclasses.asdict(context.config.eval).items()
                if k not in ("workers", "batch_size")}  # how fast, not what  # fmt: skip

    def check(self, context: RunContext, *, to_run: bool) -> None:
        if not to_run:
            return
        context.missing = missing_toolchains(context.config.eval.languages)
        for language, why in context.missing.items():
            context.console.print(
                f"[yellow]warning:[/yellow] {language} is left out of the evaluation: {why}"
            )

    def run(self, context: RunContext) -> dict:
        from geex.eval.backends import generate_samples
        from geex.eval.backends_geex import GeexBackend
        from geex.eval.bits_per_byte import reference_bits_per_byte
        from geex.eval.evaluator import EvalConfig, Evaluator
        from geex.eval.fingerprint import DIGESTS, loaded_dtype, model_generator
        from geex.eval.run import evaluate, summary
        from geex.eval.runners import RunSettings
        from geex.eval.tasks import build_tasks

        e = context.config.eval
        backend = GeexBackend.load(context.path(TrainStage.model))
        sampling = e.sampling.with_default_penalty(backend.repetition_penalty)
        generator = model_generator("geex", context.path(TrainStage.model), sampling,
                                    tokenizer=None, dtype=loaded_dtype(backend),
                                    cache=context.path(self.folder) / DIGESTS)  # fmt: skip
        results, unjudged, written = {}, {}, {}
        config = EvalConfig(workers=e.workers, settings=RunSettings(timeout=e.timeout))
        with Evaluator(config) as evaluator:
            for benchmark in benchmarks(e):
                tasks = build_tasks(problems(e, benchmark, context.missing), "generation")
                if not tasks:
                    continue

                def samples(done, tasks=tasks):
                    return generate_samples(backend, tasks, sampling, done=done,
                                            batch_size=e.batch_size)  # fmt: skip

                title = TITLES[benchmark]
                run = evaluate(
                    evaluator, tasks, samples, generator=generator, out_dir=context.path(self.folder) / benchmark,
                    title=f"{title}, generation, {sampling.describe()}",
                    progress=context.console.is_terminal, expected_samples=len(tasks) * e.n,
                    per_task=e.n,
                    bits_per_byte=reference_bits_per_byte(backend, [t.problem for t in tasks]),
                )  # fmt: skip
                judged = summary(run)
                results[benchmark] = judged["overall"]["pass@k"]
                unjudged[benchmark] = judged["missing_packages"]
                written[benchmark] = {name: shares for name, g in judged["groups"].items()
                                      if (shares := _code_shares(g))}  # fmt: skip
                line = _scores_line(results[benchmark], unjudged[benchmark])
                context.console.print(f"  {title}: {line}", markup=False)
                for language, shares in written[benchmark].items():
                    context.console.print(f"    {language}: {_shares_line(shares)}", markup=False)
        # "code": per benchmark and language, the shares of samples that parse and stay in
        # their language (geex.eval.code_checks).
        return {"pass@k": results, "missing_toolchains": context.missing,
                "missing_packages": unjudged, "code": written}  # fmt: skip

    def summary(self, record: dict) -> str:
        unjudged = record.get("missing_packages", {})  # absent in records of older runs
        written = record.get("code", {})  # absent in records of older runs
        parts = [
            f"{bench} {_scores_line(scores, unjudged.get(bench, []))}"
            + "".join(f"; {language} {_shares_line(shares)}"
                      for language, shares in written.get(bench, {}).items())
            for bench, scores in record.get("pass@k", {}).items()
        ]  # fmt: skip
        missing = record.get("missing_toolchains") or {}
        if missing:
            parts.append(f"not judged here: {', '.join(missing)}")
        return "; ".join(parts)


def _scores_line(scores: dict, missing_packages: list[dict]) -> str:
    """pass@k, then the samples a missing package left unjudged and how to install it."""
    line = ", ".join(f"{k} {100 * v:.1f}%" for k, v in scores.items())
    if missing_packages:
        samples = sum(p["samples"] for p in missing_packages)
        installs = "; ".join(f"{p['package']}: `{p['install']}`" for p in missing_packages)
        line += f" ({samples} samples not judged for want of {installs})"
    return line


def _code_shares(group: dict) -> dict:
    keys = ("parses", "stays_in_language", "blank", "language_undecided")
    return {k: group[k] for k in keys if k in group}


def _shares_line(shares: dict) -> str:
    """What users see of a language's samples, as "parses 80%, stays 90%, 1 blank, 2 of
    undecided language"."""
    names = {"parses": "parses", "stays_in_language": "stays"}
    parts = [f"{names[k]} {100 * v:.0f}%" for k, v in shares.items() if k in names]
    if shares.get("blank"):
        parts.append(f"{shares['blank']} blank")
    if shares.get("language_undecided"):
        parts.append(f"{shares['language_undecided']} of undecided language")
    return ", ".join(parts)
