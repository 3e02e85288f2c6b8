"""`geex train` writes only into run folders it made, and never over a trained model unasked.

`pytest tests/train/test_run_folder.py`
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch

from geex.errors import GeexError
from geex.train.distributed import World
from geex.train.trainer import Trainer, train
from tests.conftest import one_line_error, required_program
from tests.train.runs import geex_command, write_config
from tests.train.test_trainer import config


def geex_train(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    command = [sys.executable, "-m", "geex", "train", "--no-progress", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)


def test_an_unrelated_folder_is_refused_and_left_as_it_was(byte_dataset, tmp_path):
    mine = tmp_path / "project"
    mine.mkdir()
    (mine / "config.yaml").write_text("my: settings\n")
    (mine / "metrics.jsonl").write_text('{"mine": 1}\n')
    settings = write_config(tmp_path / "train.yaml", byte_dataset)
    refused = geex_train("--config", str(settings), "--out", str(mine))
    assert refused.returncode != 0 and "Traceback" not in refused.stderr
    assert "is not a `geex train` output folder" in refused.stderr
    assert sorted(p.name for p in mine.iterdir()) == ["config.yaml", "metrics.jsonl"]
    assert (mine / "config.yaml").read_text() == "my: settings\n"


def test_a_finished_run_without_checkpoints_is_not_trained_over(byte_dataset, tmp_path):
    run = tmp_path / "run"
    train(config(byte_dataset, run, eval_every=0), show_progress=False)
    shutil.rmtree(run / "checkpoints")
    model = (run / "model" / "model.safetensors").read_bytes()
    metrics = (run / "metrics.jsonl").read_text()
    with pytest.raises(GeexError, match="holds a trained model .* give --overwrite"):
        train(config(byte_dataset, run, eval_every=0, seed=7), show_progress=False)
    assert (run / "model" / "model.safetensors").read_bytes() == model
    assert (run / "metrics.jsonl").read_text() == metrics

    result = train(config(byte_dataset, run, eval_every=0, seed=7), show_progress=False,
                   overwrite=True)  # fmt: skip
    assert result.steps == 4 and (run / "model" / "model.safetensors").read_bytes() != model


def test_overwrite_never_deletes_a_folder_it_did_not_make(byte_dataset, tmp_path):
    mine = tmp_path / "project"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    with pytest.raises(GeexError, match="not a `geex train` output folder"):
        train(config(byte_dataset, mine), show_progress=False, overwrite=True)
    assert (mine / "notes.txt").read_text() == "keep me"


def test_an_empty_folder_or_one_with_only_the_torchrun_log_is_trained_into(byte_dataset, tmp_path):
    (tmp_path / "torchrun.log").write_text("launching\n")
    result = train(config(byte_dataset, tmp_path, eval_every=0), show_progress=False)
    assert result.steps == 4 and (tmp_path / "model" / "model.safetensors").is_file()


@pytest.mark.parametrize("under", ["", "x"])
def test_an_out_that_is_or_lies_under_a_file_is_one_line(under, byte_dataset, tmp_path):
    (tmp_path / "file").write_text("mine")
    out = tmp_path / "file" / under if under else tmp_path / "file"
    settings = write_config(tmp_path / "train.yaml", byte_dataset)
    result = geex_train("--config", str(settings), "--out", str(out))
    assert result.returncode == 2
    assert str(out) in one_line_error(result)
    assert (tmp_path / "file").read_text() == "mine"


def test_a_read_only_out_under_torchrun_is_one_line_on_every_rank(byte_dataset, tmp_path):
    """Rank 0 cannot make the run folder: every rank must say so, none die in gloo."""
    bwrap = required_program("bwrap", package="bubblewrap")
    settings = write_config(tmp_path / "train.yaml", byte_dataset)
    locked = tmp_path / "locked"
    locked.mkdir()
    run = locked / "run"
    command = geex_command("train", "--config", str(settings), "--out", str(run), nproc=2)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    result = subprocess.run(
        [bwrap, "--dev-bind", "/", "/", "--ro-bind", str(locked), str(locked), *command],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )

    assert result.returncode != 0, result.stderr
    assert result.stderr.count(f"read-only file system at {run}") == 2, result.stderr
    # torchrun prints its own traceback for a failed worker; the workers print none.
    assert "[rank1]: Traceback" not in result.stderr and "Connection reset" not in result.stderr


class MainOfTwo(World):
    """Rank 0 of two, with what it broadcasts recorded instead of sent."""

    def __init__(self):
        super().__init__(0, 2, 0, torch.device("cpu"), mesh=None, tp=1)
        self.sent: list = []

    def broadcast_object(self, obj):
        self.sent.append(obj)
        return obj


@pytest.mark.parametrize(
    ("fault", "told", "raised"),
    [
        (OSError(errno.EROFS, "Read-only file system", "/runs/a"), "read-only", GeexError),
        (OSError(errno.EIO, "Input/output error", "/runs/a"), "main rank failed", OSError),
    ],
)
def test_the_main_rank_tells_the_others_what_failed(tmp_path, fault, told, raised):
    """A fault of the machine is one line on every rank; any other OSError keeps its traceback
    on the main rank, and the other ranks are still told, so none waits for it."""
    world = MainOfTwo()
    trainer = SimpleNamespace(world=world, out=tmp_path)

    def work():
        raise fault

    with pytest.raises(raised):
        Trainer._on_main_rank(trainer, work)
    assert len(world.sent) == 1 and told in str(world.sent[0])
