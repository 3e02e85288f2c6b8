"""What a SOURCE argument of ``geex data`` names, and the reader steps that read them.

A folder, file or archive goes to :class:`~geex.data.readers.local.LocalReader`; a git URL or
bare repository to :class:`~geex.data.readers.git.GitRepoReader`; ``github:QUERY`` to
:class:`~geex.data.readers.github.GitHubCrawler`; JSONL/Parquet files, folders of them and
``hf:OWNER/NAME`` to :class:`~geex.data.readers.datasets.CodeDatasetReader`. With no source,
the code on this machine (:mod:`geex.data.embedded`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from datatrove.pipeline.base import PipelineStep

from geex.data.embedded import EMBEDDED_EXCLUDED_DIRS, embedded_sources
from geex.data.readers.datasets import CodeDatasetReader
from geex.data.readers.git import GitRepoReader
from geex.data.readers.github import GitHubCrawler
from geex.data.readers.local import (
    ARCHIVE_SUFFIXES,
    DEFAULT_EXCLUDED_DIRS,
    DEFAULT_MAX_BYTES,
    LocalReader,
)
from geex.errors import GeexError
from geex.languages import detect_language

if TYPE_CHECKING:
    from geex.data.config import DataConfig

DATASET_SUFFIXES = (".jsonl", ".jsonl.gz", ".jsonl.zst", ".json.gz", ".parquet")


@dataclass(frozen=True)
class Source:
    kind: str  # "local", "git", "github", "dataset"
    spec: str


_GIT_URL_PREFIXES = ("http://", "https://", "git://", "ssh://", "file://", "git@")


def classify_source(spec: str, dataset_layout: str = "auto") -> Source:
    """What a SOURCE argument names, from its form and what is on disk."""
    if spec.startswith("github:"):
        return Source("github", spec.removeprefix("github:"))
    for prefix in ("hf:", "hub:"):
        if spec.startswith(prefix):  # the reader's form of a name that is only a Hub name
            return Source("dataset", "hf://datasets/" + spec.removeprefix(prefix))
    if spec.startswith(_GIT_URL_PREFIXES):
        return Source("git", spec)
    path = Path(spec).expanduser()
    if path.is_file():
        if spec.lower().endswith(DATASET_SUFFIXES):
            return Source("dataset", str(path))
        return Source("local", str(path))
    if path.is_dir():
        if _is_bare_git_repo(path) or spec.rstrip("/").endswith(".git"):
            return Source("git", str(path))
        if _is_dataset_folder(path):
            return Source("dataset", str(path))
        return Source("local", str(path))
    if path.is_symlink() or os.path.lexists(path):
        return Source("local", str(path))  # a broken link: the reader counts it
    if _looks_like_a_path(spec):
        raise GeexError(f"no such file or folder: {spec}")
    if spec.count("/") == 1 or dataset_layout != "auto":
        # OWNER/NAME on the Hugging Face Hub, or a path that is not here: the reader's error
        # says both when the Hub does not have it
        return Source("dataset", spec)
    raise GeexError(
        f"no such file or folder: {spec} (nor is it a git URL, github:QUERY or hf:OWNER/NAME)"
    )


def _looks_like_a_path(spec: str) -> bool:
    """A path by its form alone: ``./x``, ``~/x``, ``/x``, ``a/b/c``, or a name with a file
    suffix (``x.py``, ``x.tar.gz``, ``x.jsonl``). One slash between two names (``owner/name``)
    is also how Hugging Face Hub datasets are named, so it is not enough."""
    if spec.startswith((".", "/", "~")) or spec.count("/") > 1 or os.sep in spec.replace("/", ""):
        return True
    name = spec.rsplit("/", 1)[-1].lower()
    suffixes = (*DATASET_SUFFIXES, *ARCHIVE_SUFFIXES, ".json", ".git")
    return name.endswith(suffixes) or detect_language(name) is not None


def _is_bare_git_repo(path: Path) -> bool:
    return (path / "HEAD").is_file() and (path / "objects").is_dir() and (path / "refs").is_dir()


def _is_dataset_folder(path: Path) -> bool:
    files = [p for p in path.rglob("*") if p.is_file()]
    return (
        bool(files)
        and all(p.name.lower().endswith((*DATASET_SUFFIXES, ".json", ".md")) for p in files)
        and any(p.name.lower().endswith(DATASET_SUFFIXES) for p in files)
    )


def resolve_sources(config: DataConfig) -> list[Source]:
    if config.sources:
        return [classify_source(s, config.dataset_layout) for s in config.sources]
    return [Source("local", str(p)) for p in embedded_sources()]


def check_repository_options(config: DataConfig, sources: list[Source]) -> None:
    """Repository options given for sources that are no repositories are refused: a
    ``--min-stars`` that reads no stars would keep every file while the user believes the
    corpus filtered."""
    given = [f"--{flag} (data.{field} in a run file)"
             for flag, field in (("min-stars", "min_stars"),
                                 ("max-repo-bytes", "git_max_repo_bytes"),
                                 ("repo-metadata", "repo_metadata"))
             if getattr(config, field) is not None]  # fmt: skip
    if given and not any(s.kind in ("git", "github") for s in sources):
        raise GeexError(
            f"{' and '.join(given)} {'applies' if len(given) == 1 else 'apply'} to git "
            "repositories and github: queries only, and no source given is one; leave "
            f"{'it' if len(given) == 1 else 'them'} out, or give repository sources"
        )


def reader_steps(config: DataConfig, sources: list[Source], work: Path) -> list[PipelineStep]:
    check_repository_options(config, sources)
    max_bytes = config.max_file_bytes or DEFAULT_MAX_BYTES
    steps: list[PipelineStep] = []
    local = [s.spec for s in sources if s.kind == "local"]
    if local:
        excluded = DEFAULT_EXCLUDED_DIRS
        if config.per_language_bytes is not None:
            excluded = EMBEDDED_EXCLUDED_DIRS
        steps.append(
            LocalReader(
                local,
                max_bytes=max_bytes,
                excluded_dirs=excluded,
                per_language_bytes=config.per_language_bytes,
                languages=config.languages,
            )
        )
    git = [s.spec for s in sources if s.kind == "git"]
    repo_options = {"max_bytes": max_bytes}
    if config.git_max_repo_bytes:
        repo_options["max_repo_bytes"] = config.git_max_repo_bytes
    if config.min_stars is not None:
        repo_options["min_stars"] = config.min_stars
    if git:
        metadata = {"metadata_file": config.repo_metadata} if config.repo_metadata else {}
        steps.append(GitRepoReader(git, work / "git", **repo_options, **metadata))
    for source in sources:
        if source.kind == "github":
            steps.append(
                GitHubCrawler(
                    source.spec,
                    work / "github",
                    token=os.environ.get("GITHUB_TOKEN"),
                    api_url=config.github_api_url,
                    max_repos=config.github_max_repos,
                    **repo_options,
                )
            )
    datasets = [s.spec for s in sources if s.kind == "dataset"]
    if datasets:
        steps.append(CodeDatasetReader(datasets, config.dataset_layout, max_bytes=max_bytes))
    return steps
