"""The registry of `geex run`'s stages: each reads only what an earlier one writes, and a
stage added to the registry is run, recorded and skipped like the others.

`pytest tests/pipeline/test_registry.py`
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from geex.errors import GeexError
from geex.pipeline import run_config
from geex.pipeline.budget import Budget
from geex.pipeline.stage import RunContext, Stage
from geex.pipeline.stage_data import DataStage
from geex.pipeline.stage_train import TrainStage
from geex.pipeline.stages import REGISTRY, STAGES, Run


def _within(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder + "/")


def test_every_stage_reads_only_what_an_earlier_stage_writes():
    written: list[str] = []
    for stage in REGISTRY:
        unmade = [p for p in stage.reads if not any(_within(p, w) for w in written)]
        assert not unmade, f"{stage.name} reads {unmade}, which no earlier stage writes"
        written += stage.writes


def test_every_stage_has_a_unique_name_and_a_description():
    assert len(set(STAGES)) == len(STAGES)
    assert all(stage.description for stage in REGISTRY)


def test_the_run_file_lays_out_the_folders_the_stages_declare(tmp_path):
    config = run_config({"out": str(tmp_path)})
    assert Path(config.data_config().out) == tmp_path / DataStage.folder
    train = config.train_config(Budget(tokens=1))
    assert Path(train.data) == tmp_path / DataStage.folder
    assert Path(train.out) == tmp_path / TrainStage.folder
    assert _within(TrainStage.model, TrainStage.folder)


class Greeting(Stage):
    name = "greeting"
    description = "write a greeting"
    writes = ("greeting.txt",)

    def run(self, context: RunContext) -> dict:
        context.path(self.writes[0]).write_text("hello")
        return {"greeting": str(context.path(self.writes[0]))}


class Echo(Stage):
    name = "echo"
    description = "repeat the greeting"
    reads = Greeting.writes
    writes = ("echo.txt",)

    def run(self, context: RunContext) -> dict:
        text = context.path(self.reads[0]).read_text()
        context.path(self.writes[0]).write_text(text * 2)
        return {"echoed": len(text)}


def test_a_stage_added_to_the_registry_is_run_recorded_and_then_skipped(tmp_path, capsys):
    config = run_config({"out": str(tmp_path / "run")})
    registry = (Greeting(), Echo())
    Run(config, registry=registry).run()
    assert (tmp_path / "run" / "echo.txt").read_text() == "hellohello"
    recorded = json.loads((tmp_path / "run" / "run.json").read_text())["stages"]
    assert list(recorded) == ["greeting", "echo"]
    assert recorded["echo"]["echoed"] == 5
    assert "2/2 echo: repeat the greeting" in capsys.readouterr().err

    (tmp_path / "run" / "echo.txt").unlink()
    Run(config, registry=registry).run()
    assert not (tmp_path / "run" / "echo.txt").exists()  # recorded as done: not run again
    assert capsys.readouterr().err.count("done before, skipped") == 2


def test_a_stage_whose_inputs_nothing_made_is_refused_before_any_work(tmp_path):
    config = run_config({"out": str(tmp_path / "run")})
    with pytest.raises(
        GeexError,
        match=r"the echo stage has nothing to read in .*: no "
        r"greeting.txt there; run the stages it needs first \(greeting:",
    ):
        Run(config, registry=(Greeting(), Echo())).run(only=["echo"])
    assert not (tmp_path / "run").exists()

    Run(config, registry=(Greeting(), Echo())).run(only=["greeting"])  # made by an earlier run
    Run(config, registry=(Greeting(), Echo())).run(only=["echo"])
    assert (tmp_path / "run" / "echo.txt").read_text() == "hellohello"
