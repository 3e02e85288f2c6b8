"""The train stage: the preset for the budget, on one process or ``nproc`` under torchrun.

A time budget is planned here, once: training gets what the stages before it left, less a
reserve for the stages after it (see :mod:`geex.pipeline.budget`).

torch (through :mod:`geex.train`) is imported inside functions, so that importing
:mod:`geex.pipeline` stays light.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import yaml

from geex.atomic import atomic_write_text
from geex.errors import GeexError
from geex.pipeline import budget as budgets
from geex.pipeline.benchmarks import problem_count
from geex.pipeline.checks import checkpoint_disk_bytes
from geex.pipeline.stage import (
    RunContext,
    RunInterrupted,
    Stage,
    is_distributed,
    is_main_process,
)
from geex.pipeline.stage_data import DataStage


class TrainStage(Stage):
    name = "train"
    description = "train the model on the data stage's shards"
    folder = "train"  # checkpoints, metrics.jsonl, the model
    model = "train/model"  # the trained model and its tokenizer, which later stages read
    metrics = "train/metrics.jsonl"
    torchrun_config = "train.yaml"
    reads = (DataStage.folder,)
    writes = (folder, torchrun_config)

    def describe(self, context: RunContext) -> str:
        preset = context.config.train_config(context.budget).preset
        return f"the {preset} preset, budget {context.budget}"

    def settings(self, context: RunContext) -> dict:
        return {**context.config.train, "budget": context.config.budget}

    def disk_bytes(self, context: RunContext) -> int:
        keep = context.config.train_config(budgets.Budget(tokens=1)).keep_checkpoints
        return checkpoint_disk_bytes(context.params, keep)

    def run(self, context: RunContext) -> dict:
        seconds = self._planned_seconds(context)
        config = context.config.train_config(context.budget, seconds)
        if context.config.nproc > 1 and not is_distributed():
            result = self._train_with_torchrun(context, config)
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
        result.update(self._final_validation(context))
        if is_main_process():
            loss = result.get("last_loss")
            context.console.print(
                f"  {result['steps']:,} steps, {result['tokens']:,} tokens"
                + (f", last loss {loss:.4f}" if loss is not None else "")
            )
        return result

    def summary(self, record: dict) -> str:
        loss = record.get("last_loss")
        bpb = (record.get("val_bpb") or {}).get("all")
        return (
            f"{record.get('steps', 0):,} steps, {record.get('tokens', 0):,} tokens"
            + (f", loss {loss:.3f}" if loss is not None else "")
            + (f", validation {bpb:.3f} bits/byte" if bpb is not None else "")
        )

    def _final_validation(self, context: RunContext) -> dict:
        """The last validation's loss and bits per byte per language, for the run file."""
        from geex.train.monitor import final_validation, read_metrics

        metrics = context.path(self.metrics)
        validation = final_validation(read_metrics(metrics)) if metrics.is_file() else None
        if validation is None:
            return {}
        return {"val_loss": validation["val_loss"], "val_bpb": validation["val_bpb"]}

    def _planned_seconds(self, context: RunContext) -> float | None:
        """The training time of a time budget, planned once and kept in the run file."""
        budget, state = context.budget, context.state
        if budget.seconds is None:
            return None
        seconds = state.plan.get("train_seconds")
        if seconds is None:  # every rank computes the same plan from the same record
            elapsed = sum(s["seconds"] for s in state.stages.values())
            reserve = budgets.after_training_seconds(
                problem_count(context.config.eval, context.missing), context.config.eval.n
            )
            seconds = round(budgets.training_seconds(budget, elapsed, reserve), 1)
            state.plan.update(train_seconds=seconds, reserve_seconds=reserve)
            if is_main_process():
                state.save()
            expected = elapsed + seconds + reserve
            if expected > 1.05 * budget.seconds:
                context.console.print(
                    f"[yellow]warning:[/yellow] the budget of {budget} is too small for "
                    f"this run: data took {budgets.Budget(seconds=round(elapsed))} and "
                    f"evaluation needs about {budgets.Budget(seconds=round(reserve))}; "
                    f"expect about {budgets.Budget(seconds=round(expected))} in all"
                )
        context.console.print(f"  training for {budgets.Budget(seconds=round(seconds))}")
        return seconds

    def _train_with_torchrun(self, context: RunContext, config) -> dict:
        """Train on ``nproc`` local processes: ``torchrun -m geex train --config OUT/train.yaml``."""
        from geex.train.monitor import read_metrics

        run_dir = Path(config.out)
        run_dir.mkdir(parents=True, exist_ok=True)
        spec = context.path(self.torchrun_config)
        atomic_write_text(spec, yaml.safe_dump(config.to_dict(), sort_keys=False))
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                   f"--nproc_per_node={context.config.nproc}", "-m", "geex", "train",
                   "--config", str(spec), "--no-progress"]  # fmt: skip
        log = run_dir / "torchrun.log"
        context.console.print(f"  {' '.join(command[2:])} (log: {log})")
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
        records = read_metrics(context.path(self.metrics))
        meta = json.loads((context.path(self.model) / "config.json").read_text())
        return {
            "steps": meta.get("trained_steps", len(records)),
            "tokens": meta.get("trained_tokens", 0),
            "last_loss": records[-1]["loss"] if records else None,
        }


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
