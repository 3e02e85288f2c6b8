"""The progress of ``geex data``'s stages: a line per stage with a bar of finished tasks.

Shared by ``geex data`` and the data stage of ``geex run``; inside ``geex run`` each bar is a
line of the run's one display (see :mod:`geex.progress`).
"""

from __future__ import annotations

import threading
import time

from geex.data.config import DataConfig
from geex.data.pipeline import Stage, is_stage_done
from geex.data.writer import read_progress
from geex.progress import open_bar


class StageProgress:
    """Shows each stage as a line with a bar of finished tasks, documents and MB/s."""

    def __init__(self, console, config: DataConfig):
        self.console, self.config = console, config

    def __call__(self, index: int, stage: Stage, run) -> None:
        label = f"[{index + 1}] {stage.name}"
        if is_stage_done(self.config, stage):
            self.console.print(f"{label}: {stage.description} [dim](done before, skipped)[/dim]")
            return
        self.console.print(f"{label}: {stage.description}, {stage.tasks} task(s)")
        work = self.config.work_dir
        completions = stage.logging_dir(work) / "completions"
        progress_folder = work / "progress" / stage.name
        done = threading.Event()
        start = time.monotonic()
        bar = open_bar(label, stage.tasks, console=self.console)

        def poll() -> None:
            while not done.wait(0.5):
                finished = len(list(completions.glob("*"))) if completions.is_dir() else 0
                docs, size = read_progress(progress_folder)
                rate = size / 1e6 / max(time.monotonic() - start, 1e-9)
                extra = f"{docs:,} files · {size / 1e6:,.1f} MB · {rate:.1f} MB/s" if docs else ""
                bar.update(completed=finished, info=extra)

        watcher = threading.Thread(target=poll, daemon=True)
        watcher.start()
        try:
            run()
        finally:
            done.set()
            watcher.join()
            bar.update(completed=stage.tasks)
            bar.close()
