"""Training checkpoints that never lose work and never go bad silently.

``RUN/checkpoints/step-00000100/`` holds everything a resumed run needs: the model and the
optimizer through torch distributed checkpoint (one file per rank, resharded on load, so a run
may come back with another world size or tensor-parallel degree), the trainer state (step,
samples consumed, loss scale, schedule horizon), each rank's RNG states, and ``manifest.json``:
the size and sha256 of every other file.

A checkpoint is written into ``.step-00000100.tmp``; once every rank has finished, the manifest
is written last (atomically) and the folder renamed into place. A crash or a full disk mid-save
leaves the previous checkpoints untouched. Files can still rot afterwards (a bad disk, a partial
copy, a stray write), so a resume checks the manifest and reads the checkpoint before trusting it:
one that fails its manifest, its trainer state or the scan for NaN is skipped with a warning and
the next older one tried (:meth:`CheckpointManager.restore`). One that matches its manifest but
cannot be loaded (out of memory, a torch that cannot read it) is not damaged: the run stops and
says why, rather than fall back and throw training away. The oldest checkpoints are deleted
beyond ``keep``, except the newest one known to be good.

Checkpoints written before manifests existed (``.metadata``, ``trainer_state.json`` and the rank
files, no ``manifest.json``) are loaded unverified, with a warning, and given a manifest once
they have loaded; one that fails to load is skipped, as nothing vouches for its files.
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
    get_state_dict,
    set_state_dict,
)
from torch.distributed.tensor import DTensor

from geex.atomic import atomic_write_bytes
from geex.errors import ConfigError, GeexError
from geex.os_faults import describe_os_fault
from geex.train.compat import check_checkpoint_shapes
from geex.train.distributed import World

STATE_FILE = "trainer_state.json"
MANIFEST_FILE = "manifest.json"
MANIFEST_FORMAT = 1
CHECKPOINT_NAME = re.compile(r"step-(\d{8})")
LEGACY_WARNING = "written before checkpoints carried a manifest: not verified"


class UnusableCheckpoint(GeexError):
    """A damaged checkpoint, to skip for an older one; the message says why."""


class _MetadataUnreadable(Exception):
    """The checkpoint's ``.metadata`` could not be read (torch raises what the pickle gives)."""


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
        problem, failure = None, None
        try:
            work()
        except (OSError, CheckpointException) as err:
            problem = _save_failure(err)
        except Exception as err:  # a bug: every rank must still leave the collective below
            failure = err
        if self.world.all_reduce_max(float(problem is not None or failure is not None)):
            if cleanup is not None and self.world.is_main:
                shutil.rmtree(cleanup, ignore_errors=True)
            self.world.barrier()
            if failure is not None:
                raise failure
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

    def restore(
        self, model, optimizer, required_keys=(), same: dict | None = None
    ) -> tuple[Path, dict] | None:
        """Load the newest good checkpoint into ``model`` and ``optimizer``; return it and its
        trainer state, or None when there is none at all.

        ``same`` maps trainer-state keys to ``(this run's value, the value of states saved
        before the key)``: a checkpoint saved with another value is refused before it loads.
        Newer checkpoints that fail their manifest, lack one of ``required_keys`` in their
        trainer state, hold NaN, or were :meth:`reject`-ed are skipped, each with a warning. If
        every checkpoint is bad the run is refused rather than started over, which would throw
        away all the training they hold.
        """
        found = self.found()
        if not found:
            return None
        skipped = []
        for path in reversed(found):
            reason = self.rejected.get(path)
            if reason is None:
                try:
                    state = self._verified_load(path, model, optimizer, required_keys, same)
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
        # Only a non-finite loss right after loading gets a checkpoint rejected; that loss
        # may come from the run's settings rather than from damage.
        if any(path in self.rejected for path in found):
            advice = (
                "A non-finite loss on the first step after loading may come from the learning "
                "rate (lr) or the data rather than from damage: check those first; if the "
                "checkpoints are damaged, move the folder away to train from scratch"
            )
        else:
            advice = (
                "Move the folder away (or delete it) to train from scratch, or use another run "
                "folder"
            )
        raise GeexError(f"no usable checkpoint in {self.folder}: {'; '.join(skipped)}. {advice}")

    def reject(self, path: Path, reason: str) -> None:
        """Mark a checkpoint that loaded but proved bad (e.g. a non-finite loss right after)."""
        self.rejected[path] = reason
        if self.good == path:
            self.good = None
        self._warn(f"checkpoint {path} skipped: {reason}")

    def _verified_load(self, path: Path, model, optimizer, required_keys, same=None) -> dict:
        """Load ``path`` on every rank once its manifest checks out (or it predates manifests).

        Raises UnusableCheckpoint for damage (skip it), and anything else (a shape that is not
        this run's, a failed load of a checkpoint its manifest vouches for) on every rank.
        """
        problem, legacy = None, False
        if self.world.is_main:
            legacy = is_legacy_checkpoint(path)
            problem = None if legacy else verify_checkpoint(path)
        problem, legacy = self.world.broadcast_object((problem, legacy))
        if problem is not None:
            raise UnusableCheckpoint(problem)
        if legacy:
            self._warn(f"checkpoint {path} was {LEGACY_WARNING}")
        problem, failure = None, None
        try:
            state = self.load(path, model, optimizer, required_keys, same)
        except UnusableCheckpoint as err:
            problem = str(err)
        # Every rank must reach the collective below before raising. dcp wraps what a rank
        # raised while loading in a CheckpointException, which is not an Exception.
        except (Exception, CheckpointException) as err:
            if legacy and not isinstance(err, GeexError):
                problem = f"cannot be read: {_load_cause(err)}"  # no manifest vouches for it
            else:
                failure = err
        outcome = self.world.all_reduce_max(2.0 if failure else 1.0 if problem else 0.0)
        if outcome == 2.0:
            raise _load_failure(path, failure)
        if outcome == 1.0:
            raise UnusableCheckpoint(problem or "another rank could not read it")
        if legacy and self.world.is_main:
            self._seal_legacy(path)
        return state

    def _seal_legacy(self, path: Path) -> None:
        """Give a checkpoint that predates manifests the manifest of the files that loaded."""
        try:
            write_manifest(path)
        except OSError as err:
            self._warn(f"cannot write {err.filename}: {err.strerror}; {path} stays unverified")

    def load(self, path: Path, model, optimizer, required_keys=(), same=None) -> dict:
        """Restore model, optimizer and RNG states; return the trainer state."""
        state = _read_trainer_state(path, required_keys)
        for key, (mine, before) in (same or {}).items():
            theirs = state.get(key, before)
            if theirs != mine:
                raise ConfigError(
                    f"{path} was trained with {key}={theirs}, this run asks for {mine}: use a "
                    f"new run folder to change it, or set {key} back to {theirs} to resume"
                )
        model_state, optim_state = get_state_dict(model, optimizer)
        try:
            metadata = dcp.FileSystemReader(str(path)).read_metadata()
        except Exception as err:  # whatever unpickling a file raises
            raise _MetadataUnreadable(_cause(err)) from err
        # Before loading: a model with fewer tensors would load without a word.
        shapes = {name: tuple(tensor.shape) for name, tensor in model_state.items()}
        check_checkpoint_shapes(path, metadata, shapes)
        bundle = {"model": model_state, "optim": optim_state}
        rng_file = path / f"rng-{self.world.rank:05d}.pt"
        same_world = state.get("world_size") == self.world.world_size
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*torch.distributed is disabled")
            dcp.load(bundle, checkpoint_id=path)
        rng = torch.load(rng_file, weights_only=False) if same_world else None
        if rng is not None and not {"python", "numpy", "torch"} <= set(rng):
            raise UnusableCheckpoint(f"{rng_file.name} lacks RNG states")
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
    atomic_write_bytes(folder / MANIFEST_FILE, (json.dumps(manifest, indent=2) + "\n").encode())


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
        try:
            if path.stat().st_size != size:
                return f"{name} has {path.stat().st_size:,} bytes, its manifest says {size:,}"
            if _sha256(path) != digest:
                return f"{name} does not match its sha256 in {MANIFEST_FILE}"
        except OSError as err:  # a bad disk: damage like any other, to skip on every rank
            return f"{name} cannot be read ({_cause(err)})"
    return None


def verify_checkpoint(folder: Path) -> str | None:
    """Why a checkpoint folder does not match its manifest, or has none; None when it does.

    A save in progress is a hidden ``.tmp`` folder until its manifest is written, so a
    ``step-*`` folder without one was made otherwise: by a Geex from before manifests
    (:func:`is_legacy_checkpoint`), or by hand.
    """
    folder = Path(folder)
    if not (folder / MANIFEST_FILE).is_file():
        if is_legacy_checkpoint(folder):
            return f"it has no {MANIFEST_FILE}: it was {LEGACY_WARNING}"
        return f"it has no {MANIFEST_FILE} and is not a complete checkpoint"
    return manifest_problem(folder)


def is_legacy_checkpoint(folder: Path) -> bool:
    """A checkpoint written before checkpoints carried a manifest: ``.metadata``, the trainer
    state and the ranks' ``.distcp`` files, and no ``manifest.json``."""
    folder = Path(folder)
    return (
        not (folder / MANIFEST_FILE).exists()
        and (folder / ".metadata").is_file()
        and (folder / STATE_FILE).is_file()
        and any(folder.glob("*.distcp"))
    )


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
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


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


def _load_failure(path: Path, err: BaseException | None) -> BaseException:
    """What to raise for a checkpoint that matches its manifest but did not load: not damage,
    so not a reason to fall back to an older one and lose the training since."""
    if err is None:
        return GeexError(f"another rank could not load checkpoint {path}; its log says why")
    if isinstance(err, (OSError, CheckpointException, _MetadataUnreadable)):
        return GeexError(
            f"cannot load checkpoint {path}: {_load_cause(err)}. Its files match its manifest, so "
            "they are as saved: fix the cause (memory, a torch version that cannot read it) "
            f"and run again, or move {path.name} away to resume from an older checkpoint"
        )
    return err


def _load_cause(err: BaseException) -> str:
    if isinstance(err, _MetadataUnreadable):
        return f"its .metadata cannot be read ({err})"
    return _cause(err)


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


# -- RNG states ----------------------------------------------------------------------------------


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
