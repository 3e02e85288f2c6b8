"""SOURCE arguments are told apart, and the same stages build Slurm executors chained by dependency. `pytest tests/data/test_sources_and_executors.py`"""

from __future__ import annotations

import subprocess

import dill
import pytest

from geex.data.config import DataConfig
from geex.data.executors import make_executor
from geex.data.pipeline import build_stages
from geex.data.sources import classify_source
from geex.errors import ConfigError, GeexError
from tests.data.trees import write_archives, write_code_tree


def test_sources_are_classified_by_form_and_by_what_is_on_disk(tmp_path):
    tree = write_code_tree(tmp_path / "tree", n_python=1, n_c=1)
    tar_path, _ = write_archives(tmp_path / "archives", {"a.py": "x = 1\n"})
    (tmp_path / "rows.jsonl").write_text('{"content": "x = 1"}\n')
    (tmp_path / "parquet").mkdir()
    (tmp_path / "parquet" / "part-0.parquet").write_bytes(b"PAR1")
    bare = tmp_path / "bare"
    subprocess.run(["git", "init", "-q", "--bare", str(bare)], check=True)
    kinds = {
        str(tree): "local",
        str(tree / "lib_00.c"): "local",
        str(tar_path): "local",
        str(tmp_path / "rows.jsonl"): "dataset",
        str(tmp_path / "parquet"): "dataset",
        str(bare): "git",
        "https://example.org/repo.git": "git",
        "git@example.org:owner/repo.git": "git",
        "github:language:go stars:>100": "github",
        "hf:bigcode/the-stack-smol": "dataset",
        "bigcode/the-stack-smol": "dataset",
    }
    for spec, kind in kinds.items():
        assert classify_source(spec).kind == kind, spec
    with pytest.raises(GeexError, match="no such file or folder"):
        classify_source(str(tmp_path / "missing" / "folder"))


def test_options_are_checked():
    with pytest.raises(ConfigError, match="dedup"):
        DataConfig(out="x", dedup="fuzzy")
    with pytest.raises(ConfigError, match="partition"):
        DataConfig(out="x", executor="slurm")
    assert DataConfig(out="x", workers=3).tasks == 3


def test_repository_options_without_a_repository_source_are_refused(tmp_path):
    """--min-stars on a local folder read no stars and kept every file, silently."""
    tree = write_code_tree(tmp_path / "tree", n_python=1, n_c=1)
    config = DataConfig(out=str(tmp_path / "out"), sources=[str(tree)], min_stars=100)
    with pytest.raises(
        GeexError,
        match=r"--min-stars \(data.min_stars in a run file\) applies to git repositories and github: "
        r"queries only, and no source given is one; leave it out",
    ):
        build_stages(config)
    config = DataConfig(out=str(tmp_path / "out"), sources=[str(tree)], min_stars=100,
                        repo_metadata=str(tmp_path / "repos.jsonl"))  # fmt: skip
    with pytest.raises(
        GeexError, match=r"file\) and --repo-metadata \(data.repo_metadata in a run file\) apply to"
    ):
        build_stages(config)
    repository = f"file://{tmp_path}/repo.git"  # a git source: the options apply
    config = DataConfig(out=str(tmp_path / "out"), sources=[str(tree), repository],
                        git_max_repo_bytes=10**6)  # fmt: skip
    assert build_stages(config)
    assert not (tmp_path / "out").exists()


def test_slurm_gets_the_same_stages_as_one_dependency_chain(tmp_path):
    tree = write_code_tree(tmp_path / "tree", n_python=1, n_c=1)
    config = DataConfig(
        out=str(tmp_path / "out"), sources=[str(tree)], executor="slurm", partition="cpu", tasks=8
    )
    executor = None
    stages = build_stages(config)
    for stage in stages:
        logging_dir = str(stage.logging_dir(config.work_dir))
        executor = make_executor(config, stage, logging_dir, depends=executor)
        assert executor.world_size == stage.tasks
    chain = []
    while executor is not None:
        chain.append(executor.job_name)
        executor = executor.depends
    assert chain[::-1] == [f"geex-data-{s.name}" for s in stages]
    assert [s.name for s in stages] == [
        "clean",
        "exact",
        "near-buckets",
        "near-clusters",
        "tokenizer",
        "pack",
        "finish",
    ]
    dill.loads(dill.dumps(stages))  # Slurm jobs unpickle the pipeline on the nodes


@pytest.mark.slow
def test_the_ray_executor_gives_the_local_executor_output(tmp_path):
    """On a local Ray instance (about a minute to start): the same bytes as local processes."""
    # An optional extra that CI does not install: a plain skip, not `missing`.
    pytest.importorskip("ray", reason="needs the optional extra geex[ray]")
    from geex.cli import main

    tree = write_code_tree(tmp_path / "tree", n_python=12, n_c=4)
    common = ["data", str(tree), "--workers", "2", "--tasks", "2", "--vocab-size", "600"]
    assert main([*common, "--out", str(tmp_path / "local")]) == 0
    assert main([*common, "--out", str(tmp_path / "ray"), "--executor", "ray"]) == 0
    names = [
        p.name for p in (tmp_path / "local").iterdir() if p.suffix in (".bin", ".npy", ".json")
    ]
    assert "dataset.json" in names and any(n.endswith(".bin") for n in names)
    for name in names:
        if name != "card.json":  # the card holds timings
            assert (tmp_path / "ray" / name).read_bytes() == (
                tmp_path / "local" / name
            ).read_bytes()
