"""A full disk while `geex data` packs its shards, or a read-only OUT, is one line naming OUT; after space is freed the same command finishes with the shards of an undisturbed run. `pytest tests/data/test_disk_faults.py`"""

from __future__ import annotations

import math
import shlex
import subprocess
from pathlib import Path

import pytest

from tests.conftest import required_program
from tests.data.cli import geex_data_command, one_line_error, run_geex_data
from tests.data.trees import write_code_tree

PAGE = 4096  # tmpfs counts whole pages
OPTIONS = ["--tasks", "1", "--no-dedup"]
# What the pack and finish stages write; everything else is written before packing starts.
PACK_WRITES = ("work/parts/", "work/logs/pack/", "work/progress/pack/", "work/logs/finish/")
MANIFEST_AND_CARD = {"dataset.json", "card.json", "card.md"}


def is_shard(relative: str) -> bool:
    return relative.endswith((".bin", ".idx.npy"))


def pages(path: Path) -> int:
    return max(1, math.ceil(path.stat().st_size / PAGE))


def usage(out: Path) -> dict[str, int]:
    """Pages written before packing, pages of shards, and pages of the whole folder."""
    before = shards = total = 0
    for path in out.rglob("*"):
        if not path.is_file():
            continue
        relative, n = path.relative_to(out).as_posix(), pages(path)
        total += n
        if is_shard(relative):
            shards += n
        elif not relative.startswith(PACK_WRITES) and relative not in MANIFEST_AND_CARD:
            before += n
    return {"before": before, "shards": shards, "total": total}


def shard_files(out: Path) -> dict[str, bytes]:
    files = {p.name: p.read_bytes() for p in out.iterdir() if is_shard(p.name)}
    return {**files, "dataset.json": (out / "dataset.json").read_bytes()}


@pytest.fixture(scope="module")
def code(tmp_path_factory) -> Path:
    return write_code_tree(tmp_path_factory.mktemp("src") / "code", n_python=150, n_c=30)


@pytest.fixture(scope="module")
def reference(code, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("reference") / "data"
    result = run_geex_data(code, "--out", out, *OPTIONS)
    assert result.returncode == 0, result.stderr
    return out


def test_a_full_disk_while_packing_is_one_line_and_the_run_resumes(code, reference, tmp_path):
    bwrap = required_program("bwrap", package="bubblewrap")
    used = usage(reference)
    assert used["shards"] >= 16, used  # room to fail part-way through the shards
    disk, kept = tmp_path / "disk", tmp_path / "kept"
    disk.mkdir()
    kept.mkdir()
    size = (used["total"] + 64) * PAGE  # the whole run and its temporary files fit
    # Taken before the run so that the disk is full half-way through the shards; freed after.
    ballast = size - (used["before"] + used["shards"] // 2) * PAGE
    out, marker = disk / "data", disk / "data/work/logs/clean/completions/00000"
    command = shlex.join(geex_data_command(code, "--out", out, *OPTIONS))
    script = f"""
        head -c {ballast} /dev/zero > {disk}/ballast
        {command} > /dev/null 2> {kept}/full.err; echo $? > {kept}/full.rc
        stat -c %y {marker} > {kept}/clean.before
        rm {disk}/ballast
        {command} > /dev/null 2> {kept}/again.err; echo $? > {kept}/again.rc
        stat -c %y {marker} > {kept}/clean.after
        cp -r {out} {kept}/data
    """
    wrapper = [bwrap, "--dev-bind", "/", "/", "--size", str(size), "--tmpfs", str(disk)]
    subprocess.run([*wrapper, "sh", "-c", script], check=True, timeout=300)
    full_err = (kept / "full.err").read_text()
    assert (kept / "full.rc").read_text().strip() != "0", full_err
    assert "Traceback" not in full_err, full_err
    (error,) = [line for line in full_err.splitlines() if line.startswith("geex data: error:")]
    assert f"cannot write to {out} (the pack stage" in error and "no space left on device" in error
    assert (kept / "again.rc").read_text().strip() == "0", (kept / "again.err").read_text()
    assert (kept / "clean.after").read_text() == (kept / "clean.before").read_text()  # kept
    assert shard_files(kept / "data") == shard_files(reference)


def test_a_read_only_out_is_one_line(code, tmp_path):
    bwrap = required_program("bwrap", package="bubblewrap")
    locked = tmp_path / "locked"
    locked.mkdir()
    wrapper = [bwrap, "--dev-bind", "/", "/", "--ro-bind", str(locked), str(locked)]
    error = one_line_error(run_geex_data(code, "--out", locked / "data", wrapper=wrapper))
    assert f"cannot write to {locked / 'data'}" in error and "read-only file system" in error
