"""The ``geex data`` pipeline: datatrove stages from sources to training shards and a card.

Stages, each a list of datatrove blocks run by one executor (local processes, Slurm or Ray)
with its own logging folder under ``OUT/work/logs/`` (task logs, statistics, completion
markers):

1. ``clean`` (N tasks): readers -> :class:`~geex.data.filters.CodeFilter` ->
   :class:`~geex.data.decontaminate.Decontaminate` -> :class:`~geex.data.pii.RedactSecrets`
   -> :class:`~geex.data.dedup.DedupSignatures` -> :class:`~geex.data.writer.CleanedWriter`;
2. ``exact`` (1 task), ``near-buckets`` (one task per LSH band, datatrove's
   ``MinhashDedupBuckets``), ``near-clusters`` (1 task): which copies to drop;
3. ``tokenizer`` (1 task): trains a tokenizer on the deduplicated corpus unless one is given;
4. ``pack`` (N tasks): cleaned JSONL -> :class:`~geex.data.dedup.DropDuplicates` ->
   :class:`~geex.data.writer.PackShards`, each task writing its own shard files;
5. ``finish`` (1 task): ``dataset.json`` listing every task's shards, and the dataset card.

Sources and their readers are in :mod:`geex.data.sources`, the executors in
:mod:`geex.data.executors`. A task that finished has a completion marker and is skipped when the run starts again; a task
that did not starts over and overwrites its own files (every file is written under a temporary
name and renamed when whole), so a killed run, started again, ends with the same output.

Output order: task ``r`` takes every N-th file of the sorted listing from position ``r``, and
the shards are listed task by task, so the token stream depends on the number of tasks (not on
the number of worker processes); which documents are kept, and which copy of a duplicate, does
not.

``ray`` is imported inside a function: it is an optional dependency, needed only by the
Ray executor.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.dedup.minhash import MinhashDedupBuckets

from geex.atomic import atomic_write_text
from geex.data.card import read_card, write_card
from geex.data.config import DataConfig, changed_output_fields
from geex.data.decontaminate import Decontaminate
from geex.data.dedup import (
    DedupSignatures,
    DropDuplicates,
    ExactDuplicates,
    NearDuplicateClusters,
    minhash_config,
)
from geex.data.executors import make_executor, silence_main_process_logging
from geex.data.filters import CodeFilter
from geex.data.fim import resolve_fim_rate
from geex.data.output_faults import writing_to
from geex.data.pii import RedactSecrets
from geex.data.sources import reader_steps, resolve_sources
from geex.data.writer import (
    CleanedReader,
    CleanedWriter,
    PackShards,
    Progress,
    TrainTokenizer,
    finish_dataset,
)
from geex.errors import GeexError
from geex.output_folder import claim_output_folder
from geex.tokenizer import load_tokenizer


@dataclass
class Stage:
    name: str
    pipeline: list[PipelineStep]
    tasks: int
    description: str

    def logging_dir(self, work: Path) -> Path:
        return work / "logs" / self.name


def build_stages(config: DataConfig) -> list[Stage]:
    work = config.work_dir
    sources = resolve_sources(config)
    tasks = config.tasks
    clean: list[PipelineStep] = reader_steps(config, sources, work)
    clean.append(Progress(work / "progress" / "clean"))
    if config.filters != "none":
        clean.append(CodeFilter(config.filters))
    if config.decontaminate:
        report_dir = str(work / "decontaminate")
        clean.append(Decontaminate(config.decontaminate, report_dir=report_dir))
    if config.pii:
        clean.append(RedactSecrets())
    if config.dedup != "none":
        clean.append(DedupSignatures(work / "dedup", near=config.near))
    clean.append(CleanedWriter(work / "cleaned"))
    work_done = ["read"] + ["filter"] * (config.filters != "none")
    work_done += ["decontaminate"] * bool(config.decontaminate) + ["redact"] * config.pii
    work_done += ["sign"] * (config.dedup != "none")
    stages = [Stage("clean", clean, tasks, ", ".join(work_done))]

    lsh = minhash_config()
    if config.exact:
        stages.append(
            Stage("exact", [ExactDuplicates(work / "dedup", tasks)], 1, "exact duplicates")
        )
    if config.near:
        buckets = MinhashDedupBuckets(
            input_folder=str(work / "dedup" / "minhash" / "sigs"),
            output_folder=str(work / "dedup" / "minhash" / "buckets"),
            config=lsh,
        )
        stages.append(Stage("near-buckets", [buckets], lsh.num_buckets, "MinHash LSH bands"))
        clusters = NearDuplicateClusters(work / "dedup", tasks)
        stages.append(Stage("near-clusters", [clusters], 1, "near-duplicate clusters"))
    if not config.tokenizer:
        trainer = TrainTokenizer(
            config.out,
            work,
            tasks,
            config.vocab_size,
            sample_bytes=config.tokenizer_sample_bytes,
            exact=config.exact,
            near=config.near,
        )
        stages.append(
            Stage("tokenizer", [trainer], 1, f"train a {config.vocab_size:,}-id tokenizer")
        )
    pack: list[PipelineStep] = [CleanedReader(work / "cleaned")]
    if config.dedup != "none":
        pack.append(DropDuplicates(work / "dedup", exact=config.exact, near=config.near))
    pack.append(Progress(work / "progress" / "pack"))
    pack.append(
        PackShards(
            config.out,
            work,
            validation_fraction=config.validation_fraction,
            shard_tokens=config.shard_tokens,
            fim_rate=config.fim_rate,
            fim_spm_rate=config.fim_spm_rate,
            fim_seed=config.fim_seed,
            language_weights=config.language_weights,
        )
    )
    stages.append(Stage("pack", pack, tasks, "tag, tokenize, pack shards"))
    stages.append(Stage("finish", [FinishDataset(config)], 1, "dataset.json and card"))
    return stages


class FinishDataset(PipelineStep):
    """Lists every task's shards in ``dataset.json`` and writes the dataset card."""

    name = "finish"
    type = "💽 - WRITER"

    def __init__(self, config: DataConfig):
        super().__init__()
        self.config = config

    def run(self, data=None, rank: int = 0, world_size: int = 1):
        with self.track_time():
            work = self.config.work_dir
            parts = finish_dataset(
                self.config.out, work, self.config.tasks, extra={"card": "card.md"}
            )
            card = write_card(self.config, parts)
        if not card["totals"]["files"]:
            raise GeexError(f"no file was kept: {Path(self.config.out) / 'card.md'} says why")
        if self.config.language_weights and not card["totals"]["train_tokens"]:
            weights = ", ".join(f"{k}={v:g}" for k, v in self.config.language_weights.items())
            raise GeexError(f"the language weights ({weights}) leave no train file to pack")
        if data:
            yield from data


# --- running -------------------------------------------------------------------------------


def prepare_output(config: DataConfig, overwrite: bool = False) -> None:
    """Create OUT, or check that the run in it was started with the same options."""
    out, work = Path(config.out), config.work_dir
    record = work / "config.json"
    fields = config.output_fields()
    earlier = claim_output_folder(
        out, owned=record.is_file(), command="geex data", overwrite=overwrite
    )
    if earlier:
        previous, now = json.loads(record.read_text()), json.loads(json.dumps(fields))
        changed = changed_output_fields(previous, now)
        if changed:
            raise GeexError(
                f"{out} holds a run started with other options ({', '.join(changed)}): "
                "give another --out, or --overwrite to start again"
            )
    work.mkdir(parents=True, exist_ok=True)  # under a file: ENOTDIR, one line at the CLI
    atomic_write_text(record, json.dumps(fields, indent=2))
    if config.tokenizer and not (out / "tokenizer.json").is_file():
        load_tokenizer(config.tokenizer).save(out)


def is_stage_done(config: DataConfig, stage: Stage) -> bool:
    folder = stage.logging_dir(config.work_dir) / "completions"
    return all((folder / f"{rank:05d}").is_file() for rank in range(stage.tasks))


def run_data_pipeline(
    config: DataConfig,
    *,
    overwrite: bool = False,
    on_stage: Callable[[int, Stage, Callable[[], None]], None] | None = None,
) -> dict | None:
    """Run (or finish) every stage into ``config.out``; returns the card (None when submitted
    to Slurm, whose jobs run later).

    ``on_stage(index, stage, run)`` wraps each local or Ray stage: the command line uses it to
    show progress while ``run()`` executes the stage.
    """

    def executor_of(stage: Stage, depends=None):
        logging_dir = str(stage.logging_dir(config.work_dir))
        return make_executor(config, stage, logging_dir, depends=depends)

    if config.executor == "slurm" and shutil.which("sbatch") is None:
        raise GeexError("--executor slurm submits with sbatch, which is not on this machine")
    if config.executor == "ray" and importlib.util.find_spec("ray") is None:
        raise GeexError("--executor ray needs Ray: pip install 'geex[ray]'")
    stages = build_stages(config)  # first: a SOURCE that is not there leaves no OUT behind
    if config.tokenizer and config.fim_rate:  # a trained tokenizer always has FIM tokens
        resolve_fim_rate(config.fim_rate, load_tokenizer(config.tokenizer))
    with writing_to(config.out, "preparing the output folder"):
        prepare_output(config, overwrite)
    if config.executor == "slurm":  # datatrove's log lines say which jobs were submitted
        executor = None
        for stage in stages:
            executor = executor_of(stage, depends=executor)
        executor.run()
        return None
    if config.executor == "ray":
        import ray

        if not ray.is_initialized():
            ray.init(address=config.ray_address)
    for index, stage in enumerate(stages):
        executor = executor_of(stage)
        silence_main_process_logging()
        with writing_to(config.out, f"the {stage.name} stage"):  # its logs and statistics
            if on_stage is None:
                executor.run()
            else:
                on_stage(index, stage, executor.run)
        silence_main_process_logging()  # a task run in this process replaced the sinks
    return read_card(config.out)
