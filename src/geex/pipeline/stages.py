"""The stages of ``geex run``, each skipped when a finished run of it is recorded.

``OUT/run.json`` records each finished stage (when, how long, what it made) and the plan of
a time budget; a stage that is not recorded runs, and picks up what an interrupted run of it
left: the data stage its finished tasks, training its last checkpoint, evaluation its
results file. So running the same command again finishes an interrupted run without redoing
anything.

1. ``data``: ``geex data`` on the sources (default: the code on this machine), decontaminated
   against the benchmarks the run evaluates on, with a tokenizer trained on it;
2. ``train``: the preset for the budget (several processes with ``nproc``);
3. ``export``: the model in Hugging Face format beside the Geex checkpoint;
4. ``eval``: generation on the embedded set and, when given, HumanEval-X, judged sandboxed;
5. ``samples``: a sampled completion per language of a short prompt;
6. ``report``: ``report.md`` and ``report.html`` from what the stages wrote.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import yaml
from rich.console import Console

from geex.atomic import atomic_write_text
from geex.errors import GeexError
from geex.pipeline import budget as budgets
from geex.pipeline.checks import (
    check_disk_space,
    check_sources_readable,
    disk_full_is_an_error,
    estimate_disk_bytes,
    missing_toolchains,
)
from geex.pipeline.config import RunConfig

STAGES = ("data", "train", "export", "eval", "samples", "report")

SAMPLE_PROMPTS = {
    "python": "def fibonacci(n):\n",
    "cpp": "#include <vector>\n\nint sum(const std::vector<int>& xs) {\n",
    "java": "public class Main {\n    public static int max(int a, int b) {\n",
    "javascript": "function isPalindrome(text) {\n",
    "go": "package main\n\nfunc reverse(s string) string {\n",
    "rust": "fn factorial(n: u64) -> u64 {\n",
}


SAMPLE_TEMPERATURE, SAMPLE_TOP_P = 0.8, 0.95


class RunInterrupted(GeexError):
    """The run stopped before its end (a signal, or jobs handed to a cluster scheduler)."""


@dataclass
class RunState:
    """``OUT/run.json``: the finished stages and the plan, rewritten atomically."""

    path: Path
    stages: dict = field(default_factory=dict)
    plan: dict = field(default_factory=dict)
    settings: dict = field(default_factory=dict)  # stage -> the settings it ran with

    @classmethod
    def load(cls, out: Path) -> RunState:
        path = out / "run.json"
        if not path.is_file():
            return cls(path)
        try:
            fields = json.loads(path.read_text())
        except ValueError:
            raise GeexError(f"{path} is damaged: remove it to redo every stage") from None
        return cls(path, fields.get("stages", {}), fields.get("plan", {}),
                   fields.get("settings", {}))  # fmt: skip

    def done(self, stage: str) -> bool:
        return stage in self.stages

    def forget(self, stages: list[str]) -> None:
        for stage in stages:
            self.stages.pop(stage, None)
        self.save()

    def add_partial(self, stage: str, seconds: float) -> None:
        """Time spent on a stage by an invocation that did not finish it."""
        partial = self.plan.setdefault("partial_seconds", {})
        partial[stage] = round(partial.get(stage, 0.0) + seconds, 2)
        self.save()

    def finish(self, stage: str, seconds: float, **info) -> None:
        seconds += self.plan.get("partial_seconds", {}).pop(stage, 0.0)
        self.stages[stage] = {
            "seconds": round(seconds, 2),
            "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            **info,
        }
        self.stages = {name: self.stages[name] for name in STAGES if name in self.stages}
        self.save()

    def save(self) -> None:
        fields = {"plan": self.plan, "stages": self.stages, "settings": self.settings}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.path, json.dumps(fields, indent=2) + "\n")


@dataclass
class RunResult:
    out: Path
    state: RunState
    missing: dict[str, str]  # evaluated languages without a toolchain -> what to install

    @property
    def report(self) -> Path:
        return self.out / "report.html"


class Run:
    """One ``geex run`` over a run folder."""

    def __init__(self, config: RunConfig, console: Console | None = None):
        self.config = config
        self.out = Path(config.out)
        self.console = console or Console(stderr=True, soft_wrap=True)
        self.state = RunState.load(self.out)
        self.budget = config.budget_spec
        self.data = config.data_config()
        self.missing: dict[str, str] = {}
        self.overall = None  # the run's line on the shared progress display

    # -- driving ---------------------------------------------------------------------------------

    def run(self, only: list[str] | None = None) -> RunResult:
        wanted = [s for s in STAGES if not only or s in only]
        self._check(wanted)
        self.out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.out / "run.yaml", yaml.safe_dump(self.config.to_dict(),
                                                                 sort_keys=False))  # fmt: skip
        from geex.progress import shared_display

        live = self.console.is_terminal and _is_main_process()
        with disk_full_is_an_error(self.out):
            if live:
                with shared_display(self.console) as display:
                    ticker = self._start_overall(display)
                    try:
                        self._run_stages(wanted)
                    finally:
                        ticker.set()
            else:
                self._run_stages(wanted)
        return RunResult(self.out, self.state, self.missing)

    def _run_stages(self, wanted: list[str]) -> None:
        for name in wanted:
            label = f"{STAGES.index(name) + 1}/{len(STAGES)} {name}"
            if self.overall is not None:
                self.overall[0].update(self.overall[1], description=f"[bold]run · {label}")
            if self.state.done(name):
                self.console.print(f"[bold]{label}[/bold]: done before, skipped")
                continue
            self.console.print(f"[bold]{label}[/bold]: {self._describe(name)}")
            settings = self._settings().get(name)
            if _is_main_process() and settings is not None:
                self.state.settings[name] = settings  # so that a resumed stage is checked
                self.state.save()
            start = time.monotonic()
            try:
                info = getattr(self, f"_stage_{name}")()
            except BaseException:  # interrupted: its time so far counts when it finishes
                if _is_main_process():
                    self.state.add_partial(name, time.monotonic() - start)
                raise
            if _is_main_process():
                self.state.finish(name, time.monotonic() - start, **(info or {}))

    def _settings(self) -> dict:
        """What each stage's output depends on, as plain data, to tell a changed run file.

        The benchmarks the data was decontaminated against are left out of ``data``: adding
        one later re-runs the evaluation with a warning rather than refusing the run."""
        data = self.data.output_fields()
        data.pop("decontaminate", None)
        plain = json.loads(json.dumps({
            "data": data,
            "train": {**self.config.train, "budget": self.config.budget},
            "eval": {k: v for k, v in dataclasses.asdict(self.config.eval).items()
                     if k not in ("workers", "batch_size")},  # how fast, not what
        }))  # fmt: skip
        return plain

    def _check_settings(self, wanted: list[str]) -> None:
        """A data or train stage started with other settings is an error (its output would
        not match the run file); an evaluation started with other settings starts again."""
        now = self._settings()
        for stage in ("data", "train"):
            before = self.state.settings.get(stage)
            if before is not None and before != now[stage]:
                changed = sorted(k for k in now[stage].keys() | before.keys()
                                 if now[stage].get(k) != before.get(k))  # fmt: skip
                raise GeexError(
                    f"{self.out} was made with other {stage} settings "
                    f"({', '.join(f'{stage}.{k}' for k in changed)}): give another --out, or "
                    "set them back"
                )
        before = self.state.settings.get("eval")
        if "eval" in wanted and before is not None and before != now["eval"]:
            self.console.print("evaluation settings changed: evaluating again")
            shutil.rmtree(self.out / "eval", ignore_errors=True)  # made with the old settings
            self.state.settings.pop("eval")
            self.state.forget(["eval", "report"])
        decontaminated = set(self.state.settings.get("decontaminated", []))
        if self.state.done("data"):
            for benchmark in self.config.decontaminate_against():
                if benchmark not in decontaminated:
                    self.console.print(
                        f"[yellow]warning:[/yellow] the training data was not decontaminated "
                        f"against {benchmark}: its scores may count problems seen in training"
                    )

    def _check(self, wanted: list[str]) -> None:
        if _is_distributed() and wanted != ["train"]:
            raise GeexError(
                "under torchrun, `geex run` runs the train stage only: add --stage train"
            )
        self._check_settings(wanted)  # on every rank: each must stop, or none
        data = self.data
        if "data" in wanted and not self.state.done("data"):
            check_sources_readable(data.sources)
        from geex.model.codegeex import num_params
        from geex.train.trainer import model_config_for

        train = self.config.train_config(budgets.Budget(tokens=1))
        params = num_params(model_config_for(train, data.vocab_size))
        todo = [s for s in wanted if not self.state.done(s)]
        if todo:
            needed = estimate_disk_bytes(
                data.sources,
                params,
                train.keep_checkpoints,
                data="data" in todo,
                checkpoints="train" in todo,
                exports="export" in todo,
            )
            check_disk_space(self.out, needed)
        if "eval" in wanted and not self.state.done("eval"):
            self.missing = missing_toolchains(self.config.eval.languages)
            for language, why in self.missing.items():
                self.console.print(
                    f"[yellow]warning:[/yellow] {language} is left out of the evaluation: {why}"
                )

    def _describe(self, name: str) -> str:
        c = self.config
        return {
            "data": "collect, clean, deduplicate, decontaminate, tokenize and shard "
            + (", ".join(self.data.sources) or "the code on this machine"),
            "train": f"the {c.train.get('preset', 'tiny')} preset, budget {self.budget}",
            "export": "the model in Hugging Face format",
            "eval": "generate and judge, sandboxed: " + ", ".join(self._benchmarks())
            if self._benchmarks()
            else "nothing to evaluate",
            "samples": "a sampled completion per language",
            "report": "report.md and report.html",
        }[name]

    def _start_overall(self, display) -> threading.Event:
        """The run's own line: wall time spent (earlier invocations' stages included) against
        the budget, ticking every second."""
        total = self.budget.seconds
        spent = sum(record["seconds"] for record in self.state.stages.values())
        task = display.add_task("[bold]run", total=total, completed=spent,
                                info=f"budget {self.budget}", count=False)  # fmt: skip
        self.overall = (display, task)
        stop = threading.Event()
        begun = time.monotonic()

        def tick() -> None:
            shown = total
            while not stop.wait(1.0):
                elapsed = spent + time.monotonic() - begun
                if shown is not None and elapsed > shown:
                    shown = elapsed + 30  # over the plan: the end is near, not known
                display.update(task, completed=elapsed, total=shown)

        threading.Thread(target=tick, daemon=True).start()
        return stop

    # -- stages ----------------------------------------------------------------------------------

    def _stage_data(self) -> dict:
        from geex.data.pipeline import run_data_pipeline
        from geex.data.stage_progress import StageProgress

        config = self.data
        card = run_data_pipeline(config, on_stage=StageProgress(self.console, config))
        if card is None:
            raise RunInterrupted(
                f"the data stage was submitted to Slurm; when its jobs have written "
                f"{config.out}/dataset.json, run the same command again"
            )
        self.state.settings["decontaminated"] = config.decontaminate
        totals = card["totals"]
        self.console.print(
            f"  {totals['files']:,} files, {totals['bytes'] / 1e6:,.1f} MB, "
            f"{totals['tokens']:,} tokens in {len(card['languages'])} languages"
        )
        return {"tokens": totals["tokens"], "files": totals["files"]}

    def _stage_train(self) -> dict:
        seconds = None
        if self.budget.seconds is not None:
            seconds = self.state.plan.get("train_seconds")
            if seconds is None:  # every rank computes the same plan from the same record
                elapsed = sum(s["seconds"] for s in self.state.stages.values())
                reserve = budgets.after_training_seconds(self._problem_count(), self.config.eval.n)
                seconds = round(budgets.training_seconds(self.budget, elapsed, reserve), 1)
                self.state.plan.update(train_seconds=seconds, reserve_seconds=reserve)
                if _is_main_process():
                    self.state.save()
                expected = elapsed + seconds + reserve
                if expected > 1.05 * self.budget.seconds:
                    self.console.print(
                        f"[yellow]warning:[/yellow] the budget of {self.budget} is too small for "
                        f"this run: data took {budgets.Budget(seconds=round(elapsed))} and "
                        f"evaluation needs about {budgets.Budget(seconds=round(reserve))}; "
                        f"expect about {budgets.Budget(seconds=round(expected))} in all"
                    )
            self.console.print(f"  training for {budgets.Budget(seconds=round(seconds))}")
        config = self.config.train_config(self.budget, seconds)
        if self.config.nproc > 1 and not _is_distributed():
            result = self._train_with_torchrun(config)
        else:
            from geex.train.trainer import train

            trained = train(config)
            if trained.stopped_early:
                raise RunInterrupted(
                    f"training stopped at step {trained.steps} (checkpoint saved): run the same "
                    "command again to continue"
                )
            result = {"steps": trained.steps, "tokens": trained.tokens,
                      "last_loss": trained.last_loss}  # fmt: skip
        if _is_main_process():
            loss = result.get("last_loss")
            self.console.print(
                f"  {result['steps']:,} steps, {result['tokens']:,} tokens"
                + (f", last loss {loss:.4f}" if loss is not None else "")
            )
        return result

    def _train_with_torchrun(self, config) -> dict:
        """Train on ``nproc`` local processes: ``torchrun -m geex train --config OUT/train.yaml``."""
        from geex.train.monitor import read_metrics

        run_dir = Path(config.out)
        run_dir.mkdir(parents=True, exist_ok=True)
        spec = self.out / "train.yaml"
        atomic_write_text(spec, yaml.safe_dump(config.to_dict(), sort_keys=False))
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                   f"--nproc_per_node={self.config.nproc}", "-m", "geex", "train",
                   "--config", str(spec), "--no-progress"]  # fmt: skip
        log = run_dir / "torchrun.log"
        self.console.print(f"  {' '.join(command[2:])} (log: {log})")
        with open(log, "ab") as sink:
            process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT)
            forwarded = _forward_signals(process)
            try:
                code = process.wait()
            finally:
                forwarded.restore()
        if forwarded.signals:  # the workers saved a checkpoint and stopped
            raise RunInterrupted(
                "training stopped (checkpoint saved): run the same command again to continue"
            )
        if code != 0:
            raise GeexError(f"training under torchrun failed (exit {code}); see {log}")
        records = read_metrics(run_dir / "metrics.jsonl")
        meta = json.loads((run_dir / "model" / "config.json").read_text())
        return {
            "steps": meta.get("trained_steps", len(records)),
            "tokens": meta.get("trained_tokens", 0),
            "last_loss": records[-1]["loss"] if records else None,
        }

    def _stage_export(self) -> dict:
        from geex.model.hf_export import export_hf

        hf = export_hf(self.out / "train" / "model", self.out / "hf")
        self.console.print(f"  {hf} (transformers, trust_remote_code=True)")
        return {"hf": str(hf)}

    def _benchmarks(self) -> list[str]:
        names = ["embedded"] if self.config.eval.embedded else []
        return names + (["humanevalx"] if self.config.eval.humanevalx else [])

    def _problems(self, benchmark: str):
        from geex.eval.problems import load_embedded, load_problems

        e = self.config.eval
        languages = [key for key in e.languages if key not in self.missing]
        if not languages:
            return []
        if benchmark == "embedded":
            problems = load_embedded(languages)
        else:
            problems = load_problems(e.humanevalx, languages)
        if e.limit is not None:
            problems = [p for p in problems if int(p.number) < e.limit]
        return problems

    def _problem_count(self) -> int:
        return sum(len(self._problems(b)) for b in self._benchmarks())

    def _stage_eval(self) -> dict:
        from geex.eval.backends import generate_samples
        from geex.eval.backends_geex import GeexBackend
        from geex.eval.evaluator import EvalConfig, Evaluator
        from geex.eval.run import evaluate, summary
        from geex.eval.runners import RunSettings
        from geex.eval.tasks import build_tasks

        e = self.config.eval
        backend = GeexBackend.load(self.out / "train" / "model")
        sampling = e.sampling
        results = {}
        config = EvalConfig(workers=e.workers, settings=RunSettings(timeout=e.timeout))
        with Evaluator(config) as evaluator:
            for benchmark in self._benchmarks():
                tasks = build_tasks(self._problems(benchmark), "generation")
                if not tasks:
                    continue

                def samples(done, tasks=tasks):
                    return generate_samples(backend, tasks, sampling, done=done,
                                            batch_size=e.batch_size)  # fmt: skip

                title = {"embedded": "Geex embedded set", "humanevalx": "HumanEval-X"}[benchmark]
                run = evaluate(
                    evaluator, tasks, samples, out_dir=self.out / "eval" / benchmark,
                    title=f"{title}, generation, n={e.n}, temperature {e.temperature:g}",
                    progress=self.console.is_terminal, expected_samples=len(tasks) * e.n,
                )  # fmt: skip
                results[benchmark] = summary(run)["overall"]["pass@k"]
                self.console.print(f"  {title}: " + ", ".join(
                    f"{k} {100 * v:.1f}%" for k, v in results[benchmark].items()))  # fmt: skip
        return {"pass@k": results, "missing_toolchains": self.missing}

    def _stage_samples(self) -> dict:
        import geex
        from geex.model.generation import SamplingConfig
        from geex.serve.completion import complete
        from geex.tokenizer import load_tokenizer

        model_dir = self.out / "train" / "model"
        model, tokenizer = geex.load_model(model_dir), load_tokenizer(model_dir)
        # Sampled rather than greedy: a model this young loops on its likeliest tokens
        # under greedy decoding; a seed keeps the report reproducible.
        sampling = SamplingConfig(
            max_new_tokens=min(128, model.config.max_seq_len // 2),
            temperature=SAMPLE_TEMPERATURE,
            top_p=SAMPLE_TOP_P,
            seed=0,
        )
        samples = []
        for language, prompt in SAMPLE_PROMPTS.items():
            (completion,) = complete(model, tokenizer, prompt, language=language, sampling=sampling)
            samples.append({"language": language, "prompt": prompt,
                            "completion": completion[0].text})  # fmt: skip
        how = {"temperature": sampling.temperature, "top_p": sampling.top_p, "seed": sampling.seed}
        record = {"sampling": how, "samples": samples}
        atomic_write_text(self.out / "samples.json", json.dumps(record, indent=2) + "\n")
        lines = [
            f"# Samples from {model_dir}\n",
            f"Completions after the language tag, sampled at temperature {SAMPLE_TEMPERATURE}, "
            f"top-p {SAMPLE_TOP_P}, seed 0.\n",
        ]
        for s in samples:
            lines += [f"## {s['language']}\n", "```", s["prompt"] + s["completion"], "```\n"]
        atomic_write_text(self.out / "samples.md", "\n".join(lines))
        return {"samples": str(self.out / "samples.md")}

    def _stage_report(self) -> dict:
        from geex.pipeline.report import write_report

        # The report's own stage time is not known while it is written; record the others.
        paths = write_report(self.out)
        return {"html": str(paths[0]), "markdown": str(paths[1])}


def stage_summary(name: str, record: dict) -> str:
    """One line on what a finished stage made, for the summary table and the report."""
    if name == "data":
        return f"{record.get('tokens', 0):,} tokens, {record.get('files', 0):,} files"
    if name == "train":
        loss = record.get("last_loss")
        return f"{record.get('steps', 0):,} steps, {record.get('tokens', 0):,} tokens" + (
            f", loss {loss:.3f}" if loss is not None else ""
        )
    if name == "eval":
        parts = [
            f"{bench} " + ", ".join(f"{k} {100 * v:.1f}%" for k, v in scores.items())
            for bench, scores in record.get("pass@k", {}).items()
        ]
        missing = record.get("missing_toolchains") or {}
        if missing:
            parts.append(f"not judged here: {', '.join(missing)}")
        return "; ".join(parts)
    return str(Path(next((v for k, v in record.items() if k not in ("seconds", "finished")), "")))


def run_pipeline(
    config: RunConfig,
    *,
    console: Console | None = None,
    only: list[str] | None = None,
    on_done: Callable[[RunResult], None] | None = None,
) -> RunResult:
    """Run (or finish) the stages of ``config`` into ``config.out``."""
    result = Run(config, console).run(only)
    if on_done:
        on_done(result)
    return result


class _ForwardedSignals:
    def __init__(self, previous: dict):
        self.previous, self.signals = previous, []

    def restore(self) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


def _forward_signals(process: subprocess.Popen) -> _ForwardedSignals:
    """Pass Ctrl-C and SIGTERM on to ``process`` (torchrun, which passes them to its workers,
    which save a checkpoint and stop) instead of dying before it has finished."""
    forwarded = _ForwardedSignals({})

    def forward(signum, frame) -> None:
        forwarded.signals.append(signum)
        process.send_signal(signum)

    for sig in (signal.SIGINT, signal.SIGTERM):
        forwarded.previous[sig] = signal.signal(sig, forward)
    return forwarded


def _is_distributed() -> bool:
    return "LOCAL_RANK" in os.environ and int(os.environ.get("WORLD_SIZE", "1")) > 1


def _is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0
