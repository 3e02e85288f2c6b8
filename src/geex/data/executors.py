"""Executors for the stages of ``geex data``: datatrove's local, Slurm and Ray executors.

The local executor is datatrove's, quieted (its tasks log to their files only, so the command
line's progress display stays readable) and started with ``fork`` where there is one.

Each executor's datatrove module (and loguru) is imported when that executor is chosen:
the Slurm and Ray ones need packages a laptop may lack.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from typing import TYPE_CHECKING

from geex.data.output_faults import output_fault
from geex.errors import GeexError

if TYPE_CHECKING:
    from geex.data.config import DataConfig
    from geex.data.pipeline import Stage


def make_executor(config: DataConfig, stage: Stage, logging_dir: str, depends=None):
    """The executor of ``config.executor`` for one stage; ``depends`` chains Slurm jobs."""
    workers = min(config.workers, stage.tasks)
    if config.executor == "local":
        return QuietLocalExecutor(
            stage.pipeline,
            tasks=stage.tasks,
            workers=workers,
            logging_dir=logging_dir,
            start_method=_start_method(),
            out=config.out,
            stage_name=stage.name,
        )
    if config.executor == "slurm":
        from datatrove.executor import SlurmPipelineExecutor

        return SlurmPipelineExecutor(
            stage.pipeline,
            tasks=stage.tasks,
            time=config.time,
            partition=config.partition,
            cpus_per_task=config.cpus_per_task,
            mem_per_cpu_gb=int(config.mem_per_cpu_gb),
            job_name=f"geex-data-{stage.name}",
            logging_dir=logging_dir,
            depends=depends,
            env_command=config.env_command,
            sbatch_args=config.sbatch_args or None,
            workers=config.workers if config.workers > 1 else -1,
        )
    from datatrove.executor.ray import RayPipelineExecutor

    return RayPipelineExecutor(
        stage.pipeline,
        tasks=stage.tasks,
        workers=config.workers,
        logging_dir=logging_dir,
        depends=depends,
        cpus_per_task=config.cpus_per_task,
        mem_per_cpu_gb=config.mem_per_cpu_gb,
    )


def _start_method() -> str:
    """fork where there is one: the workers start with the blocks' modules already imported,
    which saves about a second per process and stage (forkserver re-imports them)."""
    return "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"


def _quiet_local_executor():
    from datatrove.executor.local import LocalPipelineExecutor

    class _Quiet(LocalPipelineExecutor):
        """Local executor whose tasks log to their files only, so the command line's progress
        display stays readable; a failing task's log path is in the raised error, and a write
        into OUT that the system refuses (a full disk) is one line naming OUT."""

        def __init__(self, *args, out: str, stage_name: str, **kwargs):
            super().__init__(*args, **kwargs)
            self.out, self.stage_name = out, stage_name

        def _run_for_rank(self, rank: int, local_rank: int = 0, node_rank: int = -1):
            if multiprocessing.parent_process() is not None or os.getpid() != _MAIN_PID:
                # a forked worker: one tokenizer thread per process, and no warning about it
                os.environ["TOKENIZERS_PARALLELISM"] = "false"
            saved = sys.stderr
            sys.stderr = _devnull()
            try:
                return super()._run_for_rank(rank, local_rank, node_rank)
            except GeexError as err:  # bad input or options: one line, no traceback
                raise GeexError(str(err)) from None
            except Exception as err:
                during = f"the {self.stage_name} stage, task {rank}"
                fault = output_fault(err, self.out, during)
                if fault is not None:  # raised in a worker process: no chained cause to carry
                    raise fault from None
                log = self.logging_dir.resolve_paths(f"logs/task_{rank:05d}.log")
                raise RuntimeError(f"task {rank} failed ({err!r}); its log: {log}") from err
            finally:
                sys.stderr = saved

    return _Quiet


_DEVNULL = []
_MAIN_PID = os.getpid()


def _devnull():
    """One sink for the process: loguru keeps writing to it after a task ends."""
    if not _DEVNULL:
        _DEVNULL.append(open(os.devnull, "w"))  # noqa: SIM115 (lives as long as the process)
    return _DEVNULL[0]


def QuietLocalExecutor(*args, **kwargs):
    return _quiet_local_executor()(*args, **kwargs)


def silence_main_process_logging() -> None:
    from loguru import logger

    logger.remove()
    logger.add(sys.stderr, level="ERROR")
