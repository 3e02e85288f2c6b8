"""Training checkpoints that never lose work and never go bad silently.

``RUN/checkpoints/step-00000100/`` holds everything a resumed run needs: the model and the
optimizer through torch distributed checkpoint (one file per rank, resharded on load, so a run
may come back with another world size or tensor-parallel degree), the trainer state (step,
samples consumed, loss scale, schedule horizon), each rank's RNG states, and ``manifest.json``:
the size and sha256 of every other file.

A checkpoint is written into ``.step-00000100.tmp``; once every rank has finished, the manifest
is written last (atomically) and the folder renamed into place. A crash or a full disk mid-save
leaves the previous checkpoints untouched, and a ``step-*`` folder without a valid manifest is
never resumed from. Files can still rot afterwards (a bad disk, a partial copy, a stray write), so
a resume checks the manifest and reads the checkpoint before trusting it: one that fails is
skipped with a warning and the next older one tried (:meth:`CheckpointManager.restore`). The
oldest checkpoints are deleted beyond ``keep``, except the newest one known to be good.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import re
import shutil
import sys
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.api import CheckpointException
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_state_dict,
    set_model_state_dict,
    set_state_dict,
)
from torch.distributed.tensor import DTensor

from geex.errors import GeexError
from geex.model.checkpoint import load_state_dict
from geex.os_faults import describe_os_fault
from geex.train.distributed import World

STATE_FILE = "trainer_state.json"
MANIFEST_FILE = "manifest.json"
MANIFEST_FORMAT = 1
CHECKPOINT_NAME = re.compile(r"step-(\d{8})")
_HASH_CHUNK = 1 << 20


class UnusableCheckpoint(GeexError):
    """A checkpoint that fails its manifest or cannot be read; the message says why."""


class CheckpointManager:
    def __init__(self, folder: Path, world: World, keep: int = 3):
        self.folder, self.world, self.keep = Path(folder), world, keep
        # The newest checkpoint this process wrote or verified and loaded: rotation never
        # deletes it, whatever newer (bad) checkpoints lie beside it.
        self.good: Path | None = None
        self.rejected: dict[Path, str] = {}  # checkpoints found bad after loading, and why

    def found(self) -> list[Path]:
        """Every ``step-NNNNNNNN`` folder, oldest first: checkpoints, good or not (a save in
        progress is a hidden ``.tmp`` folder until its manifest is written)."""
        if not self.folder.is_dir():
            return []
        found = [p for p in self.folder.iterdir() if CHECKPOINT_NAME.fullmatch(p.name)]
        return sorted(found, key=checkpoint_step)

    # -- saving --------------------------------------------------------------------------------

    def save(self, step: int, model, optimizer, trainer_state: dict) -> Path:
        final = self.folder / f"step-{step:08d}"
        tmp = self.folder / f".step-{step:08d}.tmp"
        if self.world.is_main:
            self._agree(lambda: _prepare_folder(self.folder, tmp), final)
        else:
            self._agree(lambda: None, final)
        model_state, optim_state = get_state_dict(model, optimizer)

        def write_rank_files() -> None:
            with (
                warnings.catch_warnings()
            ):  # "assuming ... a single process": yes, in a world of one
                warnings.filterwarnings("ignore", message=".*torch.distributed is disabled")
                dcp.save({"model": model_state, "optim": optim_state}, checkpoint_id=tmp)
            _write_durably(tmp / f"rng-{self.world.rank:05d}.pt", _rng_bytes())

        self._agree(write_rank_files, final, cleanup=tmp)

        def seal() -> None:
            state = {**trainer_state, "world_size": self.world.world_size, "tp": self.world.tp}
            _write_durably(tmp / STATE_FILE, (json.dumps(state, indent=2) + "\n").encode())
            write_manifest(tmp)
            shutil.rmtree(final, ignore_errors=True)  # a re-save of the same step
            tmp.rename(final)

        self._agree(seal if self.world.is_main else (lambda: None), final, cleanup=tmp)
        self.good = final
        self.rejected.pop(final, None)
        if self.world.is_main:
            self._rotate()
        self.world.barrier()
        return final

    def _agree(self, work, final: Path, cleanup: Path | None = None) -> None:
        """Run this rank's part of a save; if it fails on any rank, fail on every rank (none is
        left waiting at a barrier) with one line naming the checkpoint and the cause."""
        problem = None
        try:
            work()
        except (OSError, CheckpointException) as err:
            problem = _save_failure(err)
        if self.world.all_reduce_max(float(problem is not None)):
            if cleanup is not None and self.world.is_main:
                shutil.rmtree(cleanup, ignore_errors=True)
            self.world.barrier()
            raise GeexError(
                f"cannot save checkpoint {final.name} in {self.folder}: "
                f"{problem or 'another rank failed to write its part'}; the checkpoints "
                "already there are untouched"
            )

    def _rotate(self) -> None:
        for old in self.found()[: -self.keep]:
            if old != self.good:
                shutil.rmtree(old, ignore_errors=True)
        for stale in self.folder.glob(".step-*.tmp"):
            shutil.rmtree(stale, ignore_errors=True)

    # -- resuming ------------------------------------------------------------------------------

    def restore(self, model, optimizer, required_keys=()) -> tuple[Path, dict] | None:
        """Load the newest good checkpoint into ``model`` and ``optimizer``; return it and its
        trainer state, or None when there is none at all.

        Newer checkpoints that lack their manifest or fail it, cannot be read, lack one of
        ``required_keys`` in their trainer state, or were :meth:`reject`-ed are skipped, each
        with a warning. If every checkpoint is bad the run is refused rather than started
        over, which would throw away all the training they hold.
        """
        found = self.found()
        if not found:
            return None
        skipped = []
        for path in reversed(found):
            reason = self.rejected.get(path)
            if reason is None:
                try:
                    state = self._verified_load(path, model, optimizer, required_keys)
                except UnusableCheckpoint as err:
                    reason = str(err)
                    self._warn(f"checkpoint {path} skipped: {reason}")
            if reason is not None:
                skipped.append(f"{path.name} ({reason})")
                continue
            if skipped:
                self._warn(f"resuming from {path}, the newest good checkpoint")
            self.good = path
            return path, state
        raise GeexError(
            f"no usable checkpoint in {self.folder}: {'; '.join(skipped)}. Move the folder "
            "away (or delete it) to train from scratch, or use another run folder"
        )

    def reject(self, path: Path, reason: str) -> None:
        """Mark a checkpoint that loaded but proved bad (e.g. a non-finite loss right after)."""
        self.rejected[path] = reason
        if self.good == path:
            self.good = None
        self._warn(f"checkpoint {path} skipped: {reason}")

    def _verified_load(self, path: Path, model, optimizer, required_keys) -> dict:
        problem = None
        if self.world.is_main:
            problem = verify_checkpoint(path)
        problem = self.world.broadcast_object(problem)
        if problem is None:
            try:
                state = self.load(path, model, optimizer, required_keys)
            except UnusableCheckpoint as err:
                problem = str(err)
        if self.world.all_reduce_max(float(problem is not None)):
            raise UnusableCheckpoint(problem or "another rank could not read it")
        return state

    def load(self, path: Path, model, optimizer, required_keys=()) -> dict:
        """Restore model, optimizer and RNG states; return the trainer state."""
        state = _read_trainer_state(path, required_keys)
        model_state, optim_state = get_state_dict(model, optimizer)
        bundle = {"model": model_state, "optim": optim_state}
        rng_file = path / f"rng-{self.world.rank:05d}.pt"
        same_world = state.get("world_size") == self.world.world_size
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*torch.distributed is disabled")
                dcp.load(bundle, checkpoint_id=path)
            rng = torch.load(rng_file, weights_only=False) if same_world else None
            if rng is not None and not {"python", "numpy", "torch"} <= set(rng):
                raise KeyError(f"{rng_file.name} lacks RNG states")
        # Whatever a damaged file makes torch raise (EOFError, UnpicklingError, RuntimeError,
        # KeyError, CheckpointException...), the checkpoint cannot be used.
        except (Exception, CheckpointException) as err:
            raise UnusableCheckpoint(f"cannot be read: {_cause(err)}") from None
        # Only finite states are saved, so NaN or inf here is damage (the loss would show it
        # a step or more later, after the optimizer had spread it to every weight).
        damaged = _non_finite_tensor(bundle)
        if damaged is not None:
            raise UnusableCheckpoint(f"{damaged} holds NaN or infinite values")
        set_state_dict(
            model,
            optimizer,
            model_state_dict=bundle["model"],
            optim_state_dict=bundle["optim"],
        )
        if rng is not None:
            _set_rng_state(rng)
        return state

    def _warn(self, message: str) -> None:
        if self.world.is_main:
            print(f"geex train: warning: {message}", file=sys.stderr, flush=True)


def checkpoint_step(path: Path) -> int:
    return int(path.name.removeprefix("step-"))


# -- the manifest ------------------------------------------------------------------------------


def write_manifest(folder: Path) -> None:
    """Record the size and sha256 of every file in ``folder``, atomically, as its last file."""
    files = {
        p.name: {"bytes": p.stat().st_size, "sha256": _sha256(p)}
        for p in sorted(folder.iterdir())
        if p.is_file() and p.name != MANIFEST_FILE
    }
    manifest = {"format": MANIFEST_FORMAT, "files": files}
    tmp = folder / f".{MANIFEST_FILE}.tmp"
    _write_durably(tmp, (json.dumps(manifest, indent=2) + "\n").encode())
    tmp.rename(folder / MANIFEST_FILE)


def manifest_problem(folder: Path) -> str | None:
    """Why ``folder`` does not match its manifest, or None when every file does."""
    try:
        manifest = json.loads((folder / MANIFEST_FILE).read_text())
        files = manifest["files"]
        expected = {name: (int(f["bytes"]), str(f["sha256"])) for name, f in files.items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        return f"its {MANIFEST_FILE} cannot be read ({_cause(err)})"
    for name, (size, digest) in expected.items():
        path = folder / name
        if not path.is_file():
            return f"{name} is missing"
        if path.stat().st_size != size:
            return f"{name} has {path.stat().st_size:,} bytes, its manifest says {size:,}"
        if _sha256(path) != digest:
            return f"{name} does not match its sha256 in {MANIFEST_FILE}"
    return None


def verify_checkpoint(folder: Path) -> str | None:
    """Why a checkpoint folder is not usable (unfinished, or its files changed), or None."""
    if not (Path(folder) / MANIFEST_FILE).is_file():
        return f"it has no {MANIFEST_FILE}: its save never finished"
    return manifest_problem(Path(folder))


def _non_finite_tensor(tree, name: str = "") -> str | None:
    """The dotted name of the first tensor in a nested state dict holding NaN or inf."""
    if isinstance(tree, dict):
        items = tree.items()
    elif isinstance(tree, (list, tuple)):
        items = enumerate(tree)
    elif isinstance(tree, torch.Tensor):
        local = tree.to_local() if isinstance(tree, DTensor) else tree
        finite = not local.is_floating_point() or bool(torch.isfinite(local).all())
        return None if finite else name
    else:
        return None
    for key, value in items:
        found = _non_finite_tensor(value, f"{name}.{key}" if name else str(key))
        if found is not None:
            return found
    return None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _read_trainer_state(path: Path, required_keys) -> dict:
    try:
        state = json.loads((path / STATE_FILE).read_text())
    except (OSError, ValueError) as err:
        raise UnusableCheckpoint(f"its {STATE_FILE} cannot be read ({_cause(err)})") from None
    if not isinstance(state, dict):
        raise UnusableCheckpoint(f"its {STATE_FILE} is not a JSON object")
    missing = [key for key in required_keys if key not in state]
    if missing:
        raise UnusableCheckpoint(f"its {STATE_FILE} lacks {', '.join(missing)}")
    return state


# -- writing -----------------------------------------------------------------------------------


def _prepare_folder(folder: Path, tmp: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(tmp, ignore_errors=True)


def _write_durably(path: Path, data: bytes) -> None:
    """Write and fsync, so that the manifest written after it never describes lost data."""
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _save_failure(err: BaseException) -> str:
    """The cause of a failed save in one line: the machine's fault (a full disk) when it is one."""
    return describe_os_fault(err) or _cause(err)


def _cause(err: BaseException) -> str:
    """One line for ``err``; dcp's CheckpointException carries a traceback per rank in its
    text, so its ranks' own exceptions are named instead."""
    if isinstance(err, CheckpointException):
        causes = {_cause(exc) for exc, _ in err.failures.values()}
        return "; ".join(sorted(causes)) or "torch distributed checkpoint failed"
    if isinstance(err, OSError) and err.strerror:
        where = f" ({err.filename})" if err.filename else ""
        return f"{err.strerror.lower()}{where}"
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0]}" if text else type(err).__name__


# -- fine-tuning, RNG states ----------------------------------------------------------------------


def load_model_weights(model, folder: str | Path) -> None:
    """Fine-tuning start: full weights from a Geex checkpoint folder into a (sharded) model."""
    tensors = load_state_dict(folder)
    set_model_state_dict(
        model, tensors, options=StateDictOptions(full_state_dict=True, strict=True)
    )


def _rng_bytes() -> bytes:
    buffer = io.BytesIO()
    torch.save(_rng_state(), buffer)
    return buffer.getvalue()


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
