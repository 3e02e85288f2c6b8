"""The stages of ``geex run``, in one ordered registry, each skipped when a finished run of it
is recorded.

``OUT/run.json`` records each finished stage (when, how long, what it made) and the plan of
a time budget; a stage that is not recorded runs, and picks up what an interrupted run of it
left: the data stage its finished tasks, training its last checkpoint, evaluation its
results file. So running the same command again finishes an interrupted run without redoing
anything.

Each stage is a :class:`~geex.pipeline.stage.Stage` declaring what it reads and writes under
the run folder; adding one is a class and a line in :data:`REGISTRY`.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml
from rich.console import Console

from geex.atomic import atomic_write_text
from geex.errors import GeexError
from geex.output_folder import claim_output_folder
from geex.pipeline.checks import check_disk_space, disk_full_is_an_error
from geex.pipeline.config import RunConfig
from geex.pipeline.run_state import RunState
from geex.pipeline.stage import RunContext, Stage, is_distributed, is_main_process
from geex.pipeline.stage_data import DataStage
from geex.pipeline.stage_eval import EvalStage
from geex.pipeline.stage_export import ExportStage
from geex.pipeline.stage_report import ReportStage
from geex.pipeline.stage_samples import SamplesStage
from geex.pipeline.stage_train import TrainStage
from geex.progress import shared_display

REGISTRY: tuple[Stage, ...] = (
    DataStage(),
    TrainStage(),
    ExportStage(),
    EvalStage(),
    SamplesStage(),
    ReportStage(),
)
STAGES = tuple(stage.name for stage in REGISTRY)


def stage_summary(name: str, record: dict) -> str:
    """One line on what a finished stage made, for the summary table and the report."""
    stage = next((s for s in REGISTRY if s.name == name), Stage())
    return stage.summary(record)


@dataclass
class RunResult:
    out: Path
    state: RunState
    missing: dict[str, str]  # evaluated languages without a toolchain -> what to install

    @property
    def report(self) -> Path:
        return self.out / "report.html"


class Run:
    """One ``geex run`` over a run folder, walking the stages of ``registry`` in order."""

    def __init__(
        self,
        config: RunConfig,
        console: Console | None = None,
        registry: tuple[Stage, ...] = REGISTRY,
    ):
        self.config = config
        self.out = Path(config.out)
        self.registry = registry
        self.names = tuple(stage.name for stage in registry)
        self.console = console or Console(stderr=True, soft_wrap=True)
        self.state = RunState.load(self.out, self.names)
        self.context = RunContext(config, self.out, self.console, self.state, stage_summary)
        self.overall = None  # the run's line on the shared progress display

    def run(self, only: list[str] | None = None) -> RunResult:
        wanted = [s for s in self.registry if not only or s.name in only]
        claim_output_folder(self.out, owned=self._owns_out(), command="geex run")
        self._check(wanted)
        self.out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.out / "run.yaml", yaml.safe_dump(self.config.to_dict(),
                                                                 sort_keys=False))  # fmt: skip
        live = self.console.is_terminal and is_main_process()
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
        return RunResult(self.out, self.state, self.context.missing)

    def _owns_out(self) -> bool:
        """Whether ``--out`` holds an earlier ``geex run``: its ``run.json`` (the stages' record),
        or the ``run.yaml`` it writes first (every field of a run file: a user's own lists only
        some)."""
        try:
            record = json.loads((self.out / "run.json").read_text())
            if isinstance(record, dict) and "stages" in record:
                return True
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            pass
        try:
            written = yaml.safe_load((self.out / "run.yaml").read_text())
        except (OSError, UnicodeDecodeError, yaml.YAMLError):
            return False
        return isinstance(written, dict) and set(self.config.to_dict()) <= set(written)

    def _run_stages(self, wanted: list[Stage]) -> None:
        for stage in wanted:
            name = stage.name
            label = f"{self.names.index(name) + 1}/{len(self.names)} {name}"
            if self.overall is not None:
                self.overall[0].update(self.overall[1], description=f"[bold]run · {label}")
            if self.state.done(name):
                self.console.print(f"[bold]{label}[/bold]: done before, skipped")
                continue
            self.console.print(f"[bold]{label}[/bold]: {stage.describe(self.context)}")
            settings = self._settings(stage)
            if is_main_process() and settings is not None:
                self.state.settings[name] = settings  # so that a resumed stage is checked
                self.state.save()
            start = time.monotonic()
            try:
                info = stage.run(self.context)
            except BaseException:  # interrupted: its time so far counts when it finishes
                if is_main_process():
                    self.state.add_partial(name, time.monotonic() - start)
                raise
            if is_main_process():
                self.state.finish(name, time.monotonic() - start, **(info or {}))

    def _settings(self, stage: Stage):
        """The stage's settings as plain data, as the run file keeps them."""
        return json.loads(json.dumps(stage.settings(self.context)))

    def _check_settings(self, wanted: list[Stage]) -> None:
        """A stage started with other settings is refused (its output would not match the run
        file) or, where redoing it is cheap, started again with every stage reading its output."""
        for stage in self.registry:
            before, now = self.state.settings.get(stage.name), self._settings(stage)
            if before is None or now is None:
                continue
            changed = stage.changed_settings(before, now)
            if not changed:
                continue
            if stage.on_changed_settings == "refuse":
                raise GeexError(
                    f"{self.out} was made with other {stage.name} settings "
                    f"({', '.join(f'{stage.name}.{k}' for k in changed)}): give another --out, "
                    "or set them back"
                )
            if stage in wanted:
                self.console.print(stage.redo_note)
                for folder in stage.writes:  # made with the old settings
                    path = self.context.path(folder)
                    if path.is_dir():
                        shutil.rmtree(path, ignore_errors=True)
                    else:
                        path.unlink(missing_ok=True)
                self.state.settings.pop(stage.name)
                self.state.forget(self._readers_of(stage))

    def _readers_of(self, stage: Stage) -> list[str]:
        """``stage`` and every later stage that reads, directly or not, what it writes."""
        stale, written = [stage.name], set(stage.writes)
        for later in self.registry[self.registry.index(stage) + 1 :]:
            if any(_within(read, written) for read in later.reads):
                stale.append(later.name)
                written |= set(later.writes)
        return stale

    def _check(self, wanted: list[Stage]) -> None:
        if is_distributed() and [s.name for s in wanted] != ["train"]:
            raise GeexError(
                "under torchrun, `geex run` runs the train stage only: add --stage train"
            )
        self._check_settings(wanted)  # on every rank: each must stop, or none
        todo = [s for s in wanted if not self.state.done(s.name)]
        self._check_inputs(todo)
        for stage in self.registry:
            stage.check(self.context, to_run=stage in todo)
        if todo:
            check_disk_space(self.out, sum(stage.disk_bytes(self.context) for stage in todo))

    def _check_inputs(self, todo: list[Stage]) -> None:
        """A stage left to run whose inputs are not there, and that no stage before it in this
        run makes, is refused before any work (``--stage report`` on an empty folder wrote an
        empty report and said it was done)."""
        made = {path for s in self.registry if self.state.done(s.name) for path in s.writes}
        for stage in todo:
            if stage.reads and not any(
                _within(path, made) or self.context.path(path).exists() for path in stage.reads
            ):
                raise GeexError(
                    f"the {stage.name} stage has nothing to read in {self.out}: no "
                    f"{' or '.join(stage.reads)} there; run the stages it needs first "
                    f"({', '.join(self._makers_of(stage))}: leave out --stage, or add them)"
                )
            made |= set(stage.writes)

    def _makers_of(self, stage: Stage) -> list[str]:
        """The unfinished stages that make what ``stage`` reads, directly or not, in order."""
        needed, makers = set(stage.reads), []
        for earlier in reversed(self.registry[: self.registry.index(stage)]):
            if self.state.done(earlier.name):
                continue
            if any(_within(path, set(earlier.writes)) for path in needed):
                makers.append(earlier.name)
                needed |= set(earlier.reads)
        return makers[::-1]

    def _start_overall(self, display) -> threading.Event:
        """The run's own line: wall time spent (earlier invocations' stages included) against
        the budget, ticking every second."""
        total = self.context.budget.seconds
        spent = sum(record["seconds"] for record in self.state.stages.values())
        task = display.add_task("[bold]run", total=total, completed=spent,
                                info=f"budget {self.context.budget}", count=False)  # fmt: skip
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


def _within(path: str, folders: set[str]) -> bool:
    """Whether ``path`` is one of ``folders`` or inside one of them."""
    return any(path == f or path.startswith(f.rstrip("/") + "/") for f in folders)


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
