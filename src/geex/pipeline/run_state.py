"""``OUT/run.json``: the finished stages of a ``geex run``, its budget plan and its settings."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from geex.atomic import atomic_write_text
from geex.errors import GeexError


@dataclass
class RunState:
    """``OUT/run.json``: the finished stages and the plan, rewritten atomically."""

    path: Path
    stages: dict = field(default_factory=dict)
    plan: dict = field(default_factory=dict)
    settings: dict = field(default_factory=dict)  # stage -> the settings it ran with
    order: tuple[str, ...] = ()  # the stages in run order, which the record keeps

    @classmethod
    def load(cls, out: Path, order: tuple[str, ...] = ()) -> RunState:
        path = out / "run.json"
        if not path.is_file():
            return cls(path, order=order)
        try:
            fields = json.loads(path.read_text())
        except ValueError:
            raise GeexError(f"{path} is damaged: remove it to redo every stage") from None
        return cls(path, fields.get("stages", {}), fields.get("plan", {}),
                   fields.get("settings", {}), order)  # fmt: skip

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
        rank = {name: i for i, name in enumerate(self.order)}
        self.stages = dict(sorted(self.stages.items(), key=lambda kv: rank.get(kv[0], len(rank))))
        self.save()

    def save(self) -> None:
        fields = {"plan": self.plan, "stages": self.stages, "settings": self.settings}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.path, json.dumps(fields, indent=2) + "\n")
