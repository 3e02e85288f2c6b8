"""``geex data``'s settings: one typed config, read from flags, a run file's ``data`` section
or code, kept apart from :mod:`geex.data.pipeline` so that reading it imports no datatrove
(every ``geex`` command builds its flags from it).
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from geex.config import comma_list, key_value, megabytes, one_value_each, option
from geex.errors import ConfigError, GeexError
from geex.languages import get_language

DEDUP_MODES = ("none", "exact", "near", "both")
EXECUTORS = ("local", "slurm", "ray")
# The presets of geex.data.filters.FILTER_PRESETS, named here without importing datatrove's
# filters (a fifth of a second of imports for every `geex` command).
FILTER_NAMES = ("codegeex", "codex", "codeparrot", "starcoder", "none")
_REPOS, _CLUSTER = "git and GitHub sources", "cluster executors"  # groups of `geex data -h`
WORK = "work"
# Fields that decide the output, recorded since after the others: a record written before
# lacks them, and is not compared on them (changed_output_fields).
LATER_OUTPUT_FIELDS = ("languages", "min_stars", "repo_metadata", "github_max_repos")
# Output fields added with a feature: a record written before lacks them, and the folder it
# describes was made as with this value.
NEW_OUTPUT_FIELDS = {"language_weights": {}}
# A language read more often than this is memorised, not learned; the cap also bounds the
# copies packed per file.
MAX_LANGUAGE_WEIGHT = 100


@dataclass
class DataConfig:
    """Everything ``geex data`` is told; the fields that shape the output are checked on resume.

    Each field is a ``geex data`` flag (its :func:`geex.config.option` says how) and a key of a
    run file's ``data`` section.
    """

    out: str = option(help="output folder (shards, tokenizer, card)")
    sources: list[str] = option(default_factory=list, flag=False)  # the SOURCE arguments
    tokenizer: str | None = option(None, help="tokenizer to use (default: train one on the corpus)")
    filters: str = option(
        "codegeex", choices=FILTER_NAMES, help="rule preset for dropping files (default: codegeex)"
    )
    dedup: str = option(
        "both", choices=DEDUP_MODES[1:], negation=("--no-dedup", "none"), help="default: both"
    )
    decontaminate: list[str] = option(
        default_factory=list,
        metavar="BENCH",
        help="drop files containing these benchmarks: humanevalx:DIR (HumanEval-X's "
        "humaneval_<lang>.jsonl files), embedded (Geex's evaluation set) or FILE.jsonl",
    )
    pii: bool = option(True, flags="--no-pii", help="keep secrets as they are")
    tasks: int | None = option(None, help="parallel pieces of work (default: --workers)")
    workers: int = option(default_factory=lambda: os.cpu_count() or 1, help="processes at once")
    validation_fraction: float = 0.05
    vocab_size: int = option(8192, help="when training a tokenizer")
    tokenizer_sample_bytes: int = option(
        256 * 2**20, help="corpus bytes a tokenizer is trained on (default: 256 MiB)"
    )
    dataset_layout: str = option("auto", choices=("auto", "the-stack", "codeparrot"))
    max_file_bytes: int | None = option(None, help="readers skip larger files (8 MiB)")
    per_language_bytes: int | None = option(  # the embedded default sets its cap
        None,
        flags="--per-language-mb",
        parse=megabytes,
        help="read at most this much of each language",
    )
    languages: list[str] | None = option(  # None: all
        None, parse=comma_list, help="keep only these languages from local sources, e.g. python,go"
    )
    shard_tokens: int | None = option(None, help="tokens per shard file (default: 256 Mi)")
    fim_rate: float | None = option(  # None: 0.5, or 0 for a tokenizer without FIM tokens
        None,
        metavar="RATE",
        help="share of training files rearranged to teach filling in the middle (default: "
        "0.5; 0 with a tokenizer that has no FIM tokens)",
    )
    fim_spm_rate: float = option(
        0.5, metavar="RATE", help="share of those laid out suffix first (SPM; default: 0.5)"
    )
    fim_seed: int = option(0, help="seed of which files are rearranged and where they are cut")
    language_weights: dict[str, float] = option(
        default_factory=dict,
        flags="--language-weight",
        append=True,
        parse=key_value,
        to_field=one_value_each,
        metavar="LANG=WEIGHT",
        help="pack each train file of a language WEIGHT times: 2 packs each twice, 0.5 half "
        "of them once (repeatable; validation files are never weighted)",
    )
    git_max_repo_bytes: int | None = option(
        None, flags="--max-repo-bytes", group=_REPOS, help="skip repositories larger on disk"
    )
    min_stars: int | None = option(  # git sources need repo_metadata for it; github has it
        None, group=_REPOS, help="skip repositories with fewer stars"
    )
    repo_metadata: str | None = option(
        None, group=_REPOS, help="JSONL/CSV of repositories with stars and size"
    )
    github_max_repos: int = option(100, group=_REPOS)
    github_api_url: str = option("https://api.github.com", group=_REPOS)
    executor: str = option("local", choices=EXECUTORS, group=_CLUSTER)
    partition: str | None = option(None, group=_CLUSTER, help="slurm partition")
    time: str = option("24:00:00", group=_CLUSTER, help="slurm time limit per job")
    cpus_per_task: int = option(1, group=_CLUSTER)
    mem_per_cpu_gb: float = option(2, group=_CLUSTER)
    sbatch_args: dict = option(
        default_factory=dict,
        flags="--sbatch-arg",
        append=True,
        parse=key_value,
        to_field=dict,
        metavar="KEY=VALUE",
        group=_CLUSTER,
        help="an #SBATCH line (repeatable)",
    )
    env_command: str | None = option(
        None, group=_CLUSTER, help="slurm: shell line run before each job"
    )
    ray_address: str | None = option(
        None, group=_CLUSTER, help="ray cluster to join (default: RAY_ADDRESS or local)"
    )

    def __post_init__(self) -> None:
        if self.dedup not in DEDUP_MODES:
            raise ConfigError(f"dedup must be one of {', '.join(DEDUP_MODES)}; got {self.dedup!r}")
        if self.executor not in EXECUTORS:
            raise ConfigError(
                f"executor must be one of {', '.join(EXECUTORS)}; got {self.executor!r}"
            )
        if not 0 <= self.validation_fraction < 1:
            raise ConfigError("validation fraction must be in [0, 1)")
        for name in ("fim_rate", "fim_spm_rate"):
            rate = getattr(self, name)
            if rate is not None and not 0 <= rate <= 1:
                raise ConfigError(f"{name.replace('_', ' ')} must be in [0, 1]; got {rate:g}")
        self.language_weights = _checked_weights(self.language_weights, self.languages)
        if self.workers < 1 or (self.tasks is not None and self.tasks < 1):
            raise ConfigError("workers and tasks must be at least 1")
        # Sizes: None is the default; 0 or less would be read as "no limit" or mean nothing.
        for name in ("tokenizer_sample_bytes", "max_file_bytes", "per_language_bytes",
                     "shard_tokens", "git_max_repo_bytes", "github_max_repos"):  # fmt: skip
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"{name.replace('_', ' ')} must be at least 1; got {value}")
        if self.executor == "slurm" and not self.partition:
            raise ConfigError("the slurm executor needs a partition (--partition)")
        if self.tasks is None:
            self.tasks = self.workers

    @property
    def work_dir(self) -> Path:
        """The run's work files (cleaned copies, signatures, logs) under ``out``."""
        return Path(self.out) / WORK

    @property
    def exact(self) -> bool:
        return self.dedup in ("exact", "both")

    @property
    def near(self) -> bool:
        return self.dedup in ("near", "both")

    def output_fields(self) -> dict:
        """The fields that decide the output (a resumed run must have the same)."""
        keep = [
            "sources",
            "tokenizer",
            "filters",
            "dedup",
            "decontaminate",
            "pii",
            "tasks",
            "validation_fraction",
            "vocab_size",
            "tokenizer_sample_bytes",
            "dataset_layout",
            "max_file_bytes",
            "per_language_bytes",
            "shard_tokens",
            "fim_rate",
            "fim_spm_rate",
            "fim_seed",
            "git_max_repo_bytes",
            *LATER_OUTPUT_FIELDS,
            *NEW_OUTPUT_FIELDS,
        ]
        return {k: v for k, v in asdict(self).items() if k in keep}


def _checked_weights(weights: dict[str, float], languages: list[str] | None) -> dict[str, float]:
    """Weights keyed by language key (``py`` and ``Python`` are ``python``), each a number
    from 0 to :data:`MAX_LANGUAGE_WEIGHT`; a weight of 1 is no weight, and is left out."""
    checked = {}
    kept = {_language_key(name) for name in languages} if languages is not None else None
    for name, weight in weights.items():
        try:
            key = get_language(name).key
        except GeexError as err:
            raise ConfigError(f"language weight: {err}") from None
        number = isinstance(weight, (int, float)) and not isinstance(weight, bool)
        if not number or not math.isfinite(weight) or not 0 <= weight <= MAX_LANGUAGE_WEIGHT:
            raise ConfigError(
                f"language weight of {name} must be a number from 0 to {MAX_LANGUAGE_WEIGHT}; "
                f"got {weight!r}"
            )
        if key in checked:
            raise ConfigError(f"language weight of {key} is given twice ({name!r})")
        if kept is not None and key not in kept:
            raise ConfigError(
                f"language weight of {key}: {key} is not among the languages kept "
                f"({', '.join(languages)})"
            )
        checked[key] = float(weight)
    return {key: weight for key, weight in checked.items() if weight != 1}


def _language_key(name: str) -> str:
    try:
        return get_language(name).key
    except GeexError:
        return name  # the reader names an unknown language in --languages itself


def changed_output_fields(previous: dict, now: dict) -> list[str]:
    """The output fields an earlier run's record and this run's differ in. A field the earlier
    record lacks because it was written before the field was recorded is not compared: what
    that run had is unknown, and refusing it would strand every folder made before."""
    previous = {**NEW_OUTPUT_FIELDS, **previous}
    return sorted(
        key
        for key in previous.keys() | now.keys()
        if previous.get(key) != now.get(key)
        and not (key in LATER_OUTPUT_FIELDS and key not in previous)
    )


# --- stages --------------------------------------------------------------------------------
