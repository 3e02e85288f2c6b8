"""Damaged checkpoints are skipped for the newest good one, rotation keeps that one, a NaN loss
stops the run, and a full disk mid-save loses nothing.

`pytest tests/train/test_checkpoint_faults.py`
"""

from __future__ import annotations

import dataclasses
import json
import math
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
import torch.distributed.checkpoint as dcp

from geex.train.checkpoint import (
    LEGACY_WARNING,
    MANIFEST_FILE,
    STATE_FILE,
    CheckpointManager,
    verify_checkpoint,
    write_manifest,
)
from geex.train.config import TrainConfig
from geex.train.distributed import World
from geex.train.monitor import read_metrics
from geex.train.run_folder import RECORD
from geex.train.trainer import train as train_in_process
from tests.conftest import required_program
from tests.train.runs import SMALL_MODEL, geex_command, losses, run_geex, write_config

STEPS = 6  # the first run: checkpoints after steps 2, 4 and 6
DAMAGED_WEIGHT = "model.layers.0.mlp.dense_h_to_4h.weight"


@pytest.fixture(scope="module")
def trained(byte_dataset, tmp_path_factory) -> tuple[Path, Path]:
    """A finished run with three good checkpoints, and its config: each test damages a copy."""
    folder = tmp_path_factory.mktemp("trained")
    config = write_config(
        folder / "config.yaml",
        byte_dataset,
        max_steps=STEPS,
        checkpoint_every=2,
        keep_checkpoints=3,
    )
    run = folder / "run"
    run_geex("train", "--config", str(config), "--out", str(run), "--no-progress")
    return run, config


def copy_of(trained, tmp_path) -> Path:
    run, _ = trained
    return Path(shutil.copytree(run, tmp_path / "run"))


def train(config: Path, run: Path, *flags: str, check: bool = True):
    args = ["train", "--config", str(config), "--out", str(run), "--no-progress", *flags]
    return run_geex(*args, check=check)


def checkpoint(run: Path, step: int) -> Path:
    return run / "checkpoints" / f"step-{step:08d}"


# -- the damage ----------------------------------------------------------------------------------


def overwrite_distcp(folder: Path, byte: int = 0xFF) -> None:
    """4 KiB overwritten among the weights, as in the report: 0xFF is a float32 NaN pattern.

    Aimed at the middle of one weight's bytes, found through the checkpoint's own index."""
    metadata = dcp.FileSystemReader(folder).read_metadata()
    (where,) = [
        info for index, info in metadata.storage_data.items() if index.fqn == DAMAGED_WEIGHT
    ]
    with open(folder / where.relative_path, "r+b") as f:
        f.seek(where.offset + where.length // 2 - 2048)
        f.write(bytes([byte]) * 4096)


def overwrite_distcp_with_huge_floats(folder: Path) -> None:
    """0x7F7F7F7F is 3.4e38: finite, so only the loss of the first step shows the damage."""
    overwrite_distcp(folder, 0x7F)


def truncate_metadata(folder: Path) -> None:
    path = folder / ".metadata"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def remove_rng(folder: Path) -> None:
    next(folder.glob("rng-*.pt")).unlink()


def drop_state_keys(folder: Path) -> None:
    state = json.loads((folder / STATE_FILE).read_text())
    del state["step"], state["seed"]
    (folder / STATE_FILE).write_text(json.dumps(state))


def break_state_json(folder: Path) -> None:
    (folder / STATE_FILE).write_text('{"step": 6, "seq_len": ')


def alter_manifest(folder: Path) -> None:
    manifest = json.loads((folder / MANIFEST_FILE).read_text())
    manifest["files"][".metadata"]["sha256"] = "0" * 64
    (folder / MANIFEST_FILE).write_text(json.dumps(manifest))


def remove_manifest(folder: Path) -> None:
    (folder / MANIFEST_FILE).unlink()


def truncate_legacy_metadata(folder: Path) -> None:
    """A checkpoint from before manifests whose .metadata rotted: nothing vouches for it."""
    remove_manifest(folder)
    truncate_metadata(folder)


def truncate_distcp(folder: Path) -> None:
    """Weights cut short: dcp.load fails inside a rank, which dcp reports as a
    CheckpointException (a BaseException, not an Exception)."""
    path = next(folder.glob("*.distcp"))
    path.write_bytes(path.read_bytes()[:20])


def truncate_legacy_distcp(folder: Path) -> None:
    remove_manifest(folder)
    truncate_distcp(folder)


def remove_manifest_and_metadata(folder: Path) -> None:
    remove_manifest(folder)
    (folder / ".metadata").unlink()


# (damage, whether the manifest is then rewritten to match, what the warning says). A rewritten
# manifest stands for damage done before the manifest was written (or a buggy writer): it is the
# reading of the checkpoint, then its first training step, that must catch it.
FAULTS = {
    "distcp-bytes": (overwrite_distcp, False, "__0_0.distcp does not match its sha256"),
    "distcp-nan-resealed": (overwrite_distcp, True, f"{DAMAGED_WEIGHT} holds NaN or infinite"),
    "distcp-huge-resealed": (overwrite_distcp_with_huge_floats, True, "its first step gives"),
    "metadata-truncated": (truncate_metadata, False, ".metadata has"),
    "rng-missing": (remove_rng, False, "rng-00000.pt is missing"),
    "state-keys-resealed": (drop_state_keys, True, f"its {STATE_FILE} lacks step, seed"),
    "state-json-resealed": (break_state_json, True, f"its {STATE_FILE} cannot be read"),
    "manifest-mismatch": (alter_manifest, False, ".metadata does not match its sha256"),
    "legacy-metadata-truncated": (truncate_legacy_metadata, False, "cannot be read"),
    "legacy-distcp-truncated": (truncate_legacy_distcp, False, "cannot be read"),
    "incomplete": (
        remove_manifest_and_metadata,
        False,
        f"it has no {MANIFEST_FILE} and is not a complete checkpoint",
    ),
}


@pytest.mark.parametrize("fault", FAULTS)
def test_a_damaged_checkpoint_is_skipped_for_the_newest_good_one(trained, tmp_path, fault):
    damage, reseal, reason = FAULTS[fault]
    run, (_, config) = copy_of(trained, tmp_path), trained
    newest = checkpoint(run, STEPS)
    damage(newest)
    if reseal:
        write_manifest(newest)

    result = train(config, run, "--max-steps", "8")

    assert f"checkpoint {newest} skipped: {reason}" in result.stderr, result.stderr
    assert f"resuming from {checkpoint(run, 4)}" in result.stderr
    records = read_metrics(run / "metrics.jsonl")
    assert [r["step"] for r in records] == list(range(8))  # steps 4 and 5 trained again
    assert all(math.isfinite(loss) for loss in losses(run))
    assert verify_checkpoint(checkpoint(run, 8)) is None
    assert (run / "model" / "model.safetensors").is_file()


def test_no_good_checkpoint_is_refused_and_nothing_is_deleted(trained, tmp_path):
    run, (_, config) = copy_of(trained, tmp_path), trained
    for step in (2, 4, 6):
        overwrite_distcp(checkpoint(run, step))

    result = train(config, run, "--max-steps", "8", check=False)

    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert f"no usable checkpoint in {run / 'checkpoints'}" in result.stderr
    assert "step-00000002 (__0_0.distcp does not match" in result.stderr
    assert all(checkpoint(run, step).is_dir() for step in (2, 4, 6))


def test_rotation_keeps_the_newest_good_checkpoint_behind_a_bad_newer_one(trained, tmp_path):
    run, (_, config) = copy_of(trained, tmp_path), trained
    overwrite_distcp(checkpoint(run, 6))

    # Resumed from step 4, the run saves step 5; with one checkpoint kept, counting by step
    # number alone would keep only the damaged step 6.
    train(config, run, "--max-steps", "5", "--keep-checkpoints", "1")

    assert verify_checkpoint(checkpoint(run, 5)) is None
    assert not checkpoint(run, 2).exists() and not checkpoint(run, 4).exists()
    result = train(config, run, "--max-steps", "7", "--keep-checkpoints", "1")
    assert f"resuming from {checkpoint(run, 5)}" in result.stderr
    assert [p.name for p in (run / "checkpoints").iterdir()] == ["step-00000007"]


def test_a_non_finite_loss_stops_the_run_without_saving_it(byte_dataset, tmp_path):
    # A learning rate of 1e10 turns the weights to garbage in one step: the loss of step 1 is NaN.
    config = write_config(
        tmp_path / "config.yaml", byte_dataset, max_steps=8, checkpoint_every=1, keep_checkpoints=8
    )
    run = tmp_path / "run"

    result = train(config, run, "--lr", "1e10", check=False)

    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "step 1: the loss is nan" in result.stderr, result.stderr
    assert [p.name for p in (run / "checkpoints").iterdir()] == ["step-00000001"]
    assert [r["step"] for r in read_metrics(run / "metrics.jsonl")] == [0]
    assert not (run / "model").exists()


def test_a_full_disk_during_a_save_keeps_the_previous_checkpoint(byte_dataset, tmp_path):
    """For real: the run folder on a 4 MiB tmpfs, where one checkpoint (2.6 MB) fits and a second
    does not. The tmpfs lives as long as bubblewrap, so the run folder is copied out of it."""
    bwrap = required_program("bwrap", package="bubblewrap")
    config = write_config(
        tmp_path / "config.yaml", byte_dataset, max_steps=4, checkpoint_every=2, keep_checkpoints=1
    )
    disk, kept = tmp_path / "disk", tmp_path / "kept"
    disk.mkdir()
    run = disk / "run"
    command = geex_command("train", "--config", str(config), "--out", str(run), "--no-progress")
    shell = ["sh", "-c", f"{shlex.join(command)}; status=$?; cp -a {run} {kept}; exit $status"]
    result = subprocess.run(
        [bwrap, "--dev-bind", "/", "/", "--size", str(4 << 20), "--tmpfs", str(disk), *shell],
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr
    error = (
        f"cannot save checkpoint step-00000004 in {run / 'checkpoints'}: no space left on device"
    )
    assert error in result.stderr, result.stderr
    assert [p.name for p in (kept / "checkpoints").iterdir()] == ["step-00000002"]
    assert verify_checkpoint(kept / "checkpoints" / "step-00000002") is None

    resumed = train(config, kept)
    assert "warning" not in resumed.stderr
    assert [r["step"] for r in read_metrics(kept / "metrics.jsonl")] == [0, 1, 2, 3]


# -- not damage: a checkpoint that matches its manifest but does not load --------------------------

# Damage done before the manifest was written, so the manifest vouches for it: the same files a
# torch that cannot read them, or a missing file, would give.
UNLOADABLE = {
    "metadata-truncated-resealed": (truncate_metadata, "its .metadata cannot be read"),
    "rng-missing-resealed": (remove_rng, "no such file or directory"),
    "distcp-truncated-resealed": (truncate_distcp, ""),
}


@pytest.mark.parametrize("fault", UNLOADABLE)
def test_a_checkpoint_that_matches_its_manifest_but_does_not_load_stops_the_run(
    trained, tmp_path, fault
):
    damage, cause = UNLOADABLE[fault]
    run, (_, config) = copy_of(trained, tmp_path), trained
    newest = checkpoint(run, STEPS)
    damage(newest)
    write_manifest(newest)
    metrics = (run / "metrics.jsonl").read_bytes()

    result = train(config, run, "--max-steps", "8", check=False)

    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr
    assert f"cannot load checkpoint {newest}: {cause}" in result.stderr, result.stderr
    assert "skipped" not in result.stderr
    assert (run / "metrics.jsonl").read_bytes() == metrics
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [
        f"step-{step:08d}" for step in (2, 4, 6)
    ]


def test_running_out_of_memory_while_loading_is_raised_not_skipped(
    trained, tmp_path, monkeypatch, capsys
):
    run = copy_of(trained, tmp_path)

    def out_of_memory(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(dcp, "load", out_of_memory)
    resumed = dataclasses.replace(TrainConfig.from_yaml(trained[1]), out=str(run), max_steps=8)
    with pytest.raises(torch.OutOfMemoryError):
        train_in_process(resumed, show_progress=False)

    assert "skipped" not in capsys.readouterr().err
    assert all(verify_checkpoint(checkpoint(run, step)) is None for step in (2, 4, 6))


def test_every_checkpoint_rejected_for_its_first_loss_points_at_lr_and_data(trained, tmp_path):
    run, (_, config) = copy_of(trained, tmp_path), trained
    for step in (2, 4, 6):
        overwrite_distcp_with_huge_floats(checkpoint(run, step))
        write_manifest(checkpoint(run, step))

    result = train(config, run, "--max-steps", "8", check=False)

    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr
    assert f"no usable checkpoint in {run / 'checkpoints'}" in result.stderr
    assert "may come from the learning rate (lr) or the data" in result.stderr, result.stderr


# -- checkpoints written before manifests ----------------------------------------------------------


def make_legacy(run: Path) -> None:
    """The run folder as a Geex from before manifests and the run record left it."""
    (run / RECORD).unlink()
    for step in (2, 4, 6):
        remove_manifest(checkpoint(run, step))


def test_a_run_from_before_manifests_resumes_with_a_warning_and_gains_a_manifest(trained, tmp_path):
    run, (_, config) = copy_of(trained, tmp_path), trained
    make_legacy(run)

    result = train(config, run, "--max-steps", "8")

    newest = checkpoint(run, STEPS)
    assert f"checkpoint {newest} was {LEGACY_WARNING}" in result.stderr, result.stderr
    assert "skipped" not in result.stderr
    assert [r["step"] for r in read_metrics(run / "metrics.jsonl")] == list(range(8))
    assert verify_checkpoint(newest) is None  # its manifest, written once it had loaded
    assert (run / RECORD).is_file()


def test_overwrite_clears_a_run_from_before_manifests(trained, tmp_path):
    run, (_, config) = copy_of(trained, tmp_path), trained
    make_legacy(run)

    result = train(config, run, "--max-steps", "2", "--overwrite")

    assert "warning" not in result.stderr, result.stderr
    assert [r["step"] for r in read_metrics(run / "metrics.jsonl")] == [0, 1]
    assert not checkpoint(run, STEPS).exists()


def test_each_checkpoint_resumed_from_is_checked_for_the_model_shape(
    byte_dataset, trained, tmp_path
):
    """With the newest checkpoint unreadable and no run record, the older one it falls back to
    must still be refused for a model of one layer (loading it would be a silent partial load)."""
    run = copy_of(trained, tmp_path)
    (run / RECORD).unlink()
    truncate_metadata(checkpoint(run, STEPS))
    fewer = write_config(
        tmp_path / "fewer.yaml",
        byte_dataset,
        max_steps=8,
        checkpoint_every=2,
        keep_checkpoints=3,
        model={**SMALL_MODEL, "n_layer": 1},
    )

    result = train(fewer, run, check=False)

    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr
    assert f"checkpoint {checkpoint(run, 4)} holds another model shape" in result.stderr
    assert not (run / RECORD).exists()  # the record is written only once a checkpoint fits


class WorldOfTwo(World):
    """Rank 0 of two, with the collectives recorded instead of run."""

    def __init__(self):
        super().__init__(0, 2, 0, torch.device("cpu"), mesh=None, tp=1)
        self.collectives: list[float] = []

    def all_reduce_max(self, value: float) -> float:
        self.collectives.append(value)
        return value


def test_any_failure_during_a_save_reaches_the_other_ranks_before_it_is_raised(tmp_path):
    """A bug in one rank's part of a save must not leave the others waiting at a collective."""
    world = WorldOfTwo()
    manager = CheckpointManager(tmp_path / "checkpoints", world)

    def buggy_part():
        raise ValueError("a bug in this rank's part")

    with pytest.raises(ValueError, match="a bug in this rank's part"):
        manager._agree(buggy_part, tmp_path / "checkpoints" / "step-00000001")
    assert world.collectives == [1.0]  # the other ranks learn of the failure
