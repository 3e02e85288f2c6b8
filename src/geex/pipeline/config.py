"""The configuration of ``geex run``: one YAML file for a laptop run and for a cluster run.

A run file has five top-level fields; ``data`` and ``train`` take the fields of ``geex data``
(:class:`geex.data.config.DataConfig`) and ``geex train``
(:class:`geex.train.config.TrainConfig`) under the same names, ``eval`` those of
:class:`EvalSettings`::

    out: runs/geex
    budget: 10m                 # wall time of the whole run, or a token count: "2M tokens"
    data: {sources: [src/], filters: codegeex, vocab_size: 8192}
    train: {preset: tiny, precision: fp32, parallel: {tp: 1}}
    eval: {embedded: true, humanevalx: path/to/humaneval-x, n: 1}

A field with a typo, at any level, is refused with its name, the closest valid name and the
list of valid ones, before anything runs. Fields with a :func:`geex.config.option` flag are
``geex run`` flags too (``--budget``, ``--humanevalx``); the others are set in the file.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path

from geex.config import from_dict, option, read_yaml_fields
from geex.data.config import DataConfig
from geex.data.embedded import with_embedded_defaults
from geex.errors import ConfigError
from geex.eval.backends import Sampling
from geex.eval.problems import humanevalx_language
from geex.eval.runners.base import check_timeout
from geex.pipeline.budget import Budget, parse_budget
from geex.train.config import TrainConfig

# `geex run` sets these itself: the data and run folders live in `out`, the budget is `budget`.
_DATA_SET_BY_RUN = ("out",)
_TRAIN_SET_BY_RUN = ("data", "out", "max_time", "max_tokens", "max_steps")


@dataclass
class EvalSettings:
    """What the evaluation stage judges, and how completions are drawn."""

    # Flags of `geex run` only where a laptop run needs them; the rest are set in the file.
    embedded: bool = option(True, flag=False)  # Geex's embedded set: 10 problems per language
    humanevalx: str | None = option(  # a folder of humaneval_<lang>.jsonl(.gz) files
        None, metavar="DIR", help="also evaluate on HumanEval-X from this folder"
    )
    languages: list[str] = option(
        default_factory=lambda: ["python", "cpp", "java", "js", "go", "rust"],
        metavar="LANG",
        help="evaluated languages",
    )
    limit: int | None = option(None, flag=False)  # only the first N problems of each language
    n: int = option(1, flag=False)  # completions per problem
    temperature: float = option(0.0, flag=False)  # 0: greedy
    top_p: float = option(0.95, flag=False)
    max_new_tokens: int = option(256, flag=False)
    # 1: off; none: the trained model's own (its generation_config.json), else off
    repetition_penalty: float | None = option(None, flag=False)
    batch_size: int = option(8, flag=False)
    workers: int = option(default_factory=lambda: os.cpu_count() or 1, flag=False)
    timeout: float = option(10.0, flag=False)  # seconds for one program's tests

    def __post_init__(self) -> None:
        self.sampling.check(self.batch_size, name=lambda key: f"eval.{key}")
        if self.workers < 1:
            raise ConfigError(f"eval.workers must be >= 1, got {self.workers}")
        check_timeout(self.timeout, "eval.timeout")
        self.languages = [humanevalx_language(name).key for name in self.languages]

    @property
    def sampling(self):
        """How completions are drawn, as the evaluation backends take it."""
        return Sampling(
            self.n,
            self.temperature,
            self.top_p,
            self.max_new_tokens,
            repetition_penalty=self.repetition_penalty,
        )


@dataclass
class RunConfig:
    out: str = option("runs/geex", help="run folder (default: runs/geex)")
    budget: str = option(
        "10m",
        help="wall time of the whole run (90s, 10m, 2h; default 10m) or training tokens "
        "('2M tokens')",
    )
    # DataConfig fields; on the command line, the SOURCE arguments are data.sources
    data: dict = option(default_factory=dict, flag=False)
    # TrainConfig fields (the preset's training defaults fill the rest, as for `geex train`)
    train: dict = option(default_factory=dict, subflags=(TrainConfig, ("preset",)))
    eval: EvalSettings = field(default_factory=EvalSettings)
    nproc: int = option(  # e.g. one per GPU
        1, help="training processes on this machine"
    )

    def __post_init__(self) -> None:
        if isinstance(self.eval, dict):  # as Python code may give it
            self.eval = from_dict(EvalSettings, self.eval, "eval", kind="run")
        self.budget = str(self.budget)
        parse_budget(self.budget)  # refuse a bad budget before anything runs
        for name, fields, reserved in (
            ("data", self.data, _DATA_SET_BY_RUN),
            ("train", self.train, _TRAIN_SET_BY_RUN),
        ):
            taken = sorted(set(fields) & set(reserved))
            if taken:
                raise ConfigError(
                    f"{name}.{taken[0]} is set by `geex run` (the run folder is `out`, the "
                    "training budget comes from `budget`, e.g. '2M tokens'): remove it"
                )
        self.data_config()  # checks data field names and values now
        self.train_config(Budget(tokens=1))
        if self.nproc < 1:
            raise ConfigError(f"nproc must be >= 1, got {self.nproc}")

    @property
    def budget_spec(self) -> Budget:
        return parse_budget(self.budget)

    def data_config(self) -> DataConfig:
        """The ``geex data`` config of the data stage."""
        fields = with_embedded_defaults(dict(self.data))
        fields.setdefault("decontaminate", self.decontaminate_against())
        fields["out"] = str(Path(self.out) / "data")
        return from_dict(DataConfig, fields, "data", kind="run")

    def decontaminate_against(self) -> list[str]:
        """The benchmarks the run evaluates on stay out of its training data."""
        benchmarks = ["embedded"] if self.eval.embedded else []
        if self.eval.humanevalx:
            benchmarks.append(f"humanevalx:{self.eval.humanevalx}")
        return benchmarks

    def train_config(self, budget: Budget, seconds: float | None = None):
        """The ``geex train`` config of the train stage, for a training time or token budget."""
        fields = {**self.train, "data": str(Path(self.out) / "data"),
                  "out": str(Path(self.out) / "train")}  # fmt: skip
        if budget.tokens is not None:
            fields["max_tokens"] = budget.tokens
        else:
            fields["max_time"] = seconds if seconds is not None else budget.seconds
        return TrainConfig.from_dict(fields, "train", kind="run")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def load_run_config(path: str | os.PathLike, **overrides) -> RunConfig:
    """A run file, with command-line values (those not None) replacing its fields."""
    fields = read_yaml_fields(path, "run file")
    return run_config(fields, **overrides)


def run_config(fields: dict, **overrides) -> RunConfig:
    fields = dict(fields)
    for key, value in overrides.items():
        if value is None:
            continue
        if "." in key:  # e.g. "train.preset"
            section, name = key.split(".", 1)
            fields[section] = {**(fields.get(section) or {}), name: value}
        else:
            fields[key] = value
    return from_dict(RunConfig, fields, kind="run")
