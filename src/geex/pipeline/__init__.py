"""``geex run``: the whole path from code on disk to a trained, evaluated model and a report.

:mod:`~geex.pipeline.config` holds the run file's fields, :mod:`~geex.pipeline.budget` how
a budget is spent, :mod:`~geex.pipeline.stages` the registry of stages (each a class in a
``stage_*`` module) and their resumption, :mod:`~geex.pipeline.run_state` the record
``run.json``, :mod:`~geex.pipeline.report` the report, :mod:`~geex.pipeline.checks` the
checks made before anything runs.
"""

from geex.pipeline.budget import Budget, parse_budget
from geex.pipeline.config import EvalSettings, RunConfig, load_run_config, run_config
from geex.pipeline.stage import RunInterrupted
from geex.pipeline.stages import STAGES, RunResult, run_pipeline

__all__ = [
    "STAGES",
    "Budget",
    "EvalSettings",
    "RunConfig",
    "RunInterrupted",
    "RunResult",
    "load_run_config",
    "parse_budget",
    "run_config",
    "run_pipeline",
]
