"""Training checkpoints that never lose work.

``RUN/checkpoints/step-00000100/`` holds everything a resumed run needs: the model and the
optimizer through torch distributed checkpoint (one file per rank, resharded on load, so a run
may come back with another world size or tensor-parallel degree), the trainer state (step,
samples consumed, loss scale, schedule horizon) and each rank's RNG states.

A checkpoint is written into ``.step-00000100.tmp`` and renamed into place once every rank has
finished, so a crash mid-save leaves the previous checkpoints untouched; a folder named
``step-*`` is always complete. The oldest are deleted beyond ``keep``.
"""

from __future__ import annotations

import json
import random
import shutil
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_state_dict,
    set_model_state_dict,
    set_state_dict,
)

from geex.errors import GeexError
from geex.model.checkpoint import load_state_dict
from geex.train.distributed import World

STATE_FILE = "trainer_state.json"


class CheckpointManager:
    def __init__(self, folder: Path, world: World, keep: int = 3):
        self.folder, self.world, self.keep = Path(folder), world, keep

    def complete(self) -> list[Path]:
        """Complete checkpoints, oldest first."""
        if not self.folder.is_dir():
            return []
        found = [p for p in self.folder.glob("step-*") if (p / STATE_FILE).is_file()]
        return sorted(found, key=lambda p: int(p.name.removeprefix("step-")))

    def latest(self) -> Path | None:
        done = self.complete()
        return done[-1] if done else None

    def save(self, step: int, model, optimizer, trainer_state: dict) -> Path:
        final = self.folder / f"step-{step:08d}"
        tmp = self.folder / f".step-{step:08d}.tmp"
        if self.world.is_main:
            self.folder.mkdir(parents=True, exist_ok=True)
            shutil.rmtree(tmp, ignore_errors=True)
        self.world.barrier()
        model_state, optim_state = get_state_dict(model, optimizer)
        with warnings.catch_warnings():  # "assuming ... a single process": yes, in a world of one
            warnings.filterwarnings("ignore", message=".*torch.distributed is disabled")
            dcp.save({"model": model_state, "optim": optim_state}, checkpoint_id=tmp)
        torch.save(_rng_state(), tmp / f"rng-{self.world.rank:05d}.pt")
        self.world.barrier()
        if self.world.is_main:
            state = {**trainer_state, "world_size": self.world.world_size, "tp": self.world.tp}
            (tmp / STATE_FILE).write_text(json.dumps(state, indent=2) + "\n")
            shutil.rmtree(final, ignore_errors=True)  # a re-save of the same step
            tmp.rename(final)
            for old in self.complete()[: -self.keep]:
                shutil.rmtree(old, ignore_errors=True)
            for stale in self.folder.glob(".step-*.tmp"):
                shutil.rmtree(stale, ignore_errors=True)
        self.world.barrier()
        return final

    def load(self, path: Path, model, optimizer) -> dict:
        """Restore model, optimizer and RNG states; return the trainer state."""
        try:
            state = json.loads((path / STATE_FILE).read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise GeexError(f"cannot read checkpoint {path}: {err}") from None
        model_state, optim_state = get_state_dict(model, optimizer)
        bundle = {"model": model_state, "optim": optim_state}
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*torch.distributed is disabled")
            dcp.load(bundle, checkpoint_id=path)
        set_state_dict(
            model,
            optimizer,
            model_state_dict=bundle["model"],
            optim_state_dict=bundle["optim"],
        )
        rng_file = path / f"rng-{self.world.rank:05d}.pt"
        if state.get("world_size") == self.world.world_size and rng_file.is_file():
            _set_rng_state(torch.load(rng_file, weights_only=False))
        return state


def load_model_weights(model, folder: str | Path) -> None:
    """Fine-tuning start: full weights from a Geex checkpoint folder into a (sharded) model."""
    tensors = load_state_dict(folder)
    set_model_state_dict(
        model, tensors, options=StateDictOptions(full_state_dict=True, strict=True)
    )


def _rng_state() -> dict:
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
