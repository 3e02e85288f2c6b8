"""``geex run``: the whole path from code on disk to a trained, evaluated model and a report.

:mod:`~geex.pipeline.config` holds the run file's fields, :mod:`~geex.pipeline.budget` how
a budget is spent, :mod:`~geex.pipeline.stages` the registry of stages (each a class in a
``stage_*`` module) and their resumption, :mod:`~geex.pipeline.run_state` the record
``run.json``, :mod:`~geex.pipeline.report` the report, :mod:`~geex.pipeline.checks` the
checks made before anything runs.
"""

from __future__ import annotations

from geex.lazy_exports import lazy_exports

# Loaded on first use: `geex --help` reads the run config and the stage names without the
# stages' machinery.
_EXPORTS = {
    "Budget": "geex.pipeline.budget",
    "parse_budget": "geex.pipeline.budget",
    "EvalSettings": "geex.pipeline.config",
    "RunConfig": "geex.pipeline.config",
    "load_run_config": "geex.pipeline.config",
    "run_config": "geex.pipeline.config",
    "RunInterrupted": "geex.pipeline.stage",
    "STAGES": "geex.pipeline.stages",
    "RunResult": "geex.pipeline.stages",
    "run_pipeline": "geex.pipeline.stages",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
