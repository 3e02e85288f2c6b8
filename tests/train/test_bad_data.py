"""Damaged or mismatched training data is refused with one line naming what is wrong.

`pytest tests/train/test_bad_data.py`
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from geex.errors import GeexError
from geex.train.trainer import train
from tests.train.runs import SMALL_MODEL, write_config
from tests.train.test_run_folder import geex_train
from tests.train.test_trainer import config


@pytest.fixture
def dataset(byte_dataset, tmp_path):
    """A copy of the byte dataset that a test may damage."""
    return shutil.copytree(byte_dataset, tmp_path / "data")


def test_a_truncated_shard_is_refused_before_training(dataset, tmp_path):
    shard = dataset / "train-00000.bin"
    shard.write_bytes(shard.read_bytes()[:-2000])  # whole tokens gone: it still maps as uint16
    with pytest.raises(GeexError, match="shard train-00000 of .* holds [0-9,]+ tokens but its"):
        train(config(dataset, tmp_path / "run"), show_progress=False)
    assert not (tmp_path / "run").exists()


def test_a_shard_missing_from_the_manifest_counts_is_refused(dataset, tmp_path):
    manifest = json.loads((dataset / "dataset.json").read_text())
    manifest["splits"]["train"]["tokens"] += 100  # a shard whose index was cut as well
    (dataset / "dataset.json").write_text(json.dumps(manifest))
    with pytest.raises(GeexError, match="'train' split of .* but dataset.json counts"):
        train(config(dataset, tmp_path / "run"), show_progress=False)


def test_a_truncated_validation_shard_is_refused_not_skipped(dataset, tmp_path):
    shard = dataset / "validation-00000.bin"
    shard.write_bytes(shard.read_bytes()[:-200])
    with pytest.raises(GeexError, match="shard validation-00000"):
        train(config(dataset, tmp_path / "run"), show_progress=False)


def without_checksums(dataset):
    """The manifest as a dataset too large to checksum at start (or an older one) has it."""
    manifest = json.loads((dataset / "dataset.json").read_text())
    for split in manifest["splits"].values():
        split.pop("checksums", None)
    (dataset / "dataset.json").write_text(json.dumps(manifest))


def test_a_shard_changed_in_place_fails_its_checksum(dataset, tmp_path):
    shard = dataset / "train-00000.bin"
    tokens = np.fromfile(shard, dtype="<u2")
    tokens[100] = (tokens[100] + 1) % 256  # same size, same vocabulary: only the digest tells
    tokens.tofile(shard)
    with pytest.raises(GeexError, match="shard train-00000 of .* does not match its checksum"):
        train(config(dataset, tmp_path / "run"), show_progress=False)


def test_a_token_id_beyond_the_vocabulary_is_one_line_naming_the_shard(dataset, tmp_path):
    shard = dataset / "train-00000.bin"
    tokens = np.fromfile(shard, dtype="<u2")
    tokens[::50] = 60_000  # beyond the model's 384 embedding rows: an IndexError in torch
    tokens.tofile(shard)
    without_checksums(dataset)  # the check on every batch, not the one at start
    settings = write_config(tmp_path / "train.yaml", dataset)
    refused = geex_train("--config", str(settings), "--out", str(tmp_path / "run"))
    assert refused.returncode != 0 and "Traceback" not in refused.stderr, refused.stderr
    assert "shard train-00000" in refused.stderr and "token id 60000" in refused.stderr
    assert "vocabulary of 257" in refused.stderr


def test_a_model_vocabulary_smaller_than_the_data_is_refused_at_start(byte_dataset, tmp_path):
    small_vocab = {**SMALL_MODEL, "vocab_size": 100}
    with pytest.raises(GeexError, match="data uses 257 token ids but the model embeds only 128"):
        train(config(byte_dataset, tmp_path / "run", model=small_vocab), show_progress=False)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda m: m.pop("splits"), "has no 'splits'"),
        (lambda m: m.update(splits=["train-00000"]), "has a list as its 'splits'"),
        (lambda m: m["splits"]["train"].pop("shards"), "split 'train' has no list of shards"),
        (lambda m: m.update(token_dtype="int12"), "token_dtype 'int12' is not a dtype"),
    ],
)
def test_a_malformed_manifest_is_named(dataset, tmp_path, damage, message):
    manifest = json.loads((dataset / "dataset.json").read_text())
    damage(manifest)
    (dataset / "dataset.json").write_text(json.dumps(manifest))
    with pytest.raises(GeexError, match=message):
        train(config(dataset, tmp_path / "run"), show_progress=False)


def test_a_manifest_that_is_not_json_is_one_line(dataset, tmp_path):
    (dataset / "dataset.json").write_text('{"format": "geex-shards", "splits": {')
    settings = write_config(tmp_path / "train.yaml", dataset)
    refused = geex_train("--config", str(settings), "--out", str(tmp_path / "run"))
    assert refused.returncode != 0 and "Traceback" not in refused.stderr, refused.stderr
    assert f"cannot read {dataset / 'dataset.json'}" in refused.stderr
