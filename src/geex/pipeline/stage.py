"""What a stage of ``geex run`` is, and what it is given to run.

A stage declares the files and folders under the run folder it ``reads`` and ``writes``;
a stage reads only what an earlier stage writes, and hands its output on through those
declared paths (the train stage's ``model`` folder is what export, eval and samples read).
The ordered registry of stages is :data:`geex.pipeline.stages.REGISTRY`.

torch (through :mod:`geex.model` and :mod:`geex.train`) is imported inside functions, so
that importing :mod:`geex.pipeline` stays light.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import ClassVar

from rich.console import Console

from geex.errors import GeexError
from geex.pipeline.budget import Budget
from geex.pipeline.config import RunConfig
from geex.pipeline.run_state import RunState


class RunInterrupted(GeexError):
    """The run stopped before its end (a signal, or jobs handed to a cluster scheduler)."""


@dataclass
class RunContext:
    """What every stage is given: the run file, the run folder and what is recorded in it."""

    config: RunConfig
    out: Path
    console: Console
    state: RunState
    stage_summary: Callable[[str, dict], str]  # a finished stage's line, by stage name
    missing: dict[str, str] = field(default_factory=dict)  # language -> what to install

    @property
    def budget(self) -> Budget:
        return self.config.budget_spec

    @cached_property
    def data(self):
        """The data stage's configuration, built once per run (its defaults read the disk)."""
        return self.config.data_config()

    @cached_property
    def params(self) -> int:
        """Parameters of the model the run trains, for the disk estimate."""
        from geex.model.codegeex import num_params
        from geex.train.trainer import model_config_for

        train = self.config.train_config(Budget(tokens=1))
        return num_params(model_config_for(train, self.data.vocab_size))

    def path(self, relative: str) -> Path:
        """A declared path (a stage's ``reads`` or ``writes``) inside the run folder."""
        return self.out / relative


class Stage:
    """One stage of ``geex run``: a name, a line saying what it does, what it reads and
    writes under the run folder, and :meth:`run`, which returns what the run file records."""

    name: ClassVar[str]
    description: ClassVar[str]
    reads: ClassVar[tuple[str, ...]] = ()
    writes: ClassVar[tuple[str, ...]] = ()
    # What a changed setting does to a finished stage: "refuse" the run (its output would
    # not match the run file) or "redo" the stage and every stage reading what it wrote.
    on_changed_settings: ClassVar[str] = "refuse"
    redo_note: ClassVar[str] = "settings changed: running the stage again"

    def run(self, context: RunContext) -> dict:
        raise NotImplementedError

    def describe(self, context: RunContext) -> str:
        """The line printed when the stage starts; the description unless a stage says more."""
        return self.description

    def settings(self, context: RunContext) -> dict | None:
        """What the stage's output depends on, as plain data, to tell a changed run file."""
        return None

    def changed_settings(self, before: dict, now: dict) -> list[str]:
        """The settings a finished stage ran with (``before``) and this run's differ in."""
        return sorted(k for k in now.keys() | before.keys() if now.get(k) != before.get(k))

    def check(self, context: RunContext, *, to_run: bool) -> None:
        """Checked before any stage runs, so a run fails at once rather than midway."""

    def disk_bytes(self, context: RunContext) -> int:
        """Bytes the stage will write, for the free-space check before a run."""
        return 0

    def summary(self, record: dict) -> str:
        """One line on what the finished stage made, for the summary table and the report."""
        made = next((v for k, v in record.items() if k not in ("seconds", "finished")), "")
        return str(Path(made))


def is_distributed() -> bool:
    return "LOCAL_RANK" in os.environ and int(os.environ.get("WORLD_SIZE", "1")) > 1


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0
