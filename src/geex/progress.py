"""Progress bars that share one live display while ``geex run`` walks its stages.

Rich shows one live display at a time, so a stage that started its own bar inside ``geex
run``'s display would fail. Each stage asks :func:`open_bar` for a bar instead: inside
:func:`shared_display` it gets a line of that display, under the run's overall line and its
ETA; on its own (``geex train``, ``geex eval``, ``geex data``) it gets a display of its own.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

# The display open in this context (``geex run``'s), or None. A context variable rather than a
# plain global: it belongs to the code running inside ``shared_display`` and nothing else.
_shared: ContextVar[Progress | None] = ContextVar("geex_shared_progress", default=None)


class _Count(MofNCompleteColumn):
    """ "done/total", except on lines that count time rather than things (the run's own)."""

    def render(self, task):
        if not task.fields.get("count", True):
            return Text("")
        return super().render(task)


def _columns() -> tuple:
    return (
        TextColumn("{task.description}"),
        BarColumn(bar_width=30),
        _Count(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
    )


class Bar:
    """One line of progress: a task of the shared display, or a display of its own."""

    def __init__(self, progress: Progress, task: TaskID, owned: bool):
        self.progress, self.task, self.owned = progress, task, owned

    def update(
        self,
        *,
        completed: float | None = None,
        advance: float | None = None,
        total: float | None = None,
        info: str | None = None,
    ) -> None:
        fields = {} if info is None else {"info": info}
        if total is not None:
            fields["total"] = total
        self.progress.update(self.task, completed=completed, advance=advance, **fields)

    def close(self) -> None:
        """An own display stops (its last state stays on screen); a line of the shared
        display goes, so that it shows the run and the stage at work, not the whole history."""
        if self.owned:
            self.progress.stop()
        else:
            self.progress.remove_task(self.task)


def open_bar(
    description: str,
    total: float | None,
    *,
    completed: float = 0,
    console: Console | None = None,
) -> Bar:
    """A bar on the shared display when one is open, else on a display of its own."""
    shared = _shared.get()
    if shared is not None:
        task = shared.add_task(description, total=total, completed=completed, info="")
        return Bar(shared, task, owned=False)
    progress = Progress(*_columns(), console=console or Console(stderr=True))
    task = progress.add_task(description, total=total, completed=completed, info="")
    progress.start()
    return Bar(progress, task, owned=True)


def shared_active() -> bool:
    return _shared.get() is not None


@contextmanager
def shared_display(console: Console) -> Iterator[Progress]:
    """Every :func:`open_bar` inside this block draws on one display, returned here."""
    progress = Progress(*_columns(), console=console, refresh_per_second=4)
    token = _shared.set(progress)
    progress.start()
    try:
        yield progress
    finally:
        _shared.reset(token)
        progress.stop()
