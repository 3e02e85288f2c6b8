"""The run folder of ``geex train``: made by it, resumed only as the same run, and never
holding a trained model that a new run would overwrite unasked.

``geex train`` marks the folders it makes as ``geex data`` does (:mod:`geex.output_folder`),
with ``geex-train.json``: the record of the run's model shape and tokenizer
(:func:`geex.train.compat.run_identity`), written before the first step. A folder holding
anything else is refused; a folder of an earlier run is resumed from its last checkpoint when
this run is the same model on the same tokenizer, and refused otherwise; a finished run whose
checkpoints are gone is refused, so that its model is not trained over.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from geex.atomic import atomic_write_text
from geex.errors import GeexError
from geex.output_folder import claim_output_folder
from geex.train.checkpoint import MANIFEST_FILE, CheckpointManager, is_legacy_checkpoint
from geex.train.compat import check_same_identity

RECORD = "geex-train.json"
# `geex run` opens its torchrun log in the folder before `geex train` starts there.
MADE_BEFORE_THE_RUN = ("torchrun.log",)


def prepare_run_folder(
    out: Path,
    *,
    identity: dict,
    checkpoints: CheckpointManager,
    overwrite: bool = False,
) -> None:
    """Claim ``out`` for a run of ``identity``: make it, writing nothing in it yet.

    Raises GeexError, before anything is written, when ``out`` is someone else's folder, when
    its record is of another model or tokenizer, or when it holds a trained model with no
    checkpoint to resume (``overwrite`` deletes an earlier run's folder first). Each checkpoint's
    tensors are compared with the model's when it is loaded.
    """
    record = out / RECORD
    # A checkpoint is ours too: run folders written before the record (or the manifest) existed.
    earlier_checkpoints = [
        path
        for path in checkpoints.found()
        if (path / MANIFEST_FILE).is_file() or is_legacy_checkpoint(path)
    ]
    owned = record.is_file() or bool(earlier_checkpoints)
    earlier = claim_output_folder(
        out, owned=owned, command="geex train", overwrite=overwrite, ignored=MADE_BEFORE_THE_RUN
    )
    if earlier and earlier_checkpoints:
        if record.is_file():
            check_same_identity(read_record(record), identity, out)
    elif (out / "model").exists():
        raise GeexError(
            f"{out / 'model'} holds a trained model and {out / 'checkpoints'} no checkpoint to "
            f"resume its run from: give --overwrite to delete {out} and train again, or "
            f"another --out"
        )
    out.mkdir(parents=True, exist_ok=True)


def write_run_record(out: Path, *, identity: dict, config: dict) -> None:
    """Write the run's record and ``config.yaml``: once its checkpoint has loaded (so a run
    refused for another model shape leaves the folder's record as it was) or it starts anew."""
    record = {"made_by": "geex train", **identity}
    atomic_write_text(out / RECORD, json.dumps(record, indent=2) + "\n")
    atomic_write_text(out / "config.yaml", yaml.safe_dump(config, sort_keys=False))


def read_record(path: Path) -> dict:
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise GeexError(
            f"cannot read {path}: {err}; give --overwrite to delete its run folder and train again"
        ) from None
    if not isinstance(record, dict):
        raise GeexError(f"{path} is not a `geex train` record: give another --out")
    return record
