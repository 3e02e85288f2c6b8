"""Fixtures for training tests: a small byte-level dataset, built once per session."""

from __future__ import annotations

import pytest

from tests.train.corpus import write_byte_shards


@pytest.fixture(scope="session")
def byte_dataset(tmp_path_factory):
    return write_byte_shards(tmp_path_factory.mktemp("byte-data"))


@pytest.fixture(scope="session")
def chat_base_model(tmp_path_factory):
    from tests.train.instructions import write_base_model

    return write_base_model(tmp_path_factory.mktemp("chat-base") / "model")


@pytest.fixture(scope="session")
def bpe_dataset(tmp_path_factory):
    """The same corpus tokenized by a small byte-level BPE saved beside the shards."""
    from tests.train.corpus import write_tokenized_shards

    return write_tokenized_shards(tmp_path_factory.mktemp("bpe-data"), "python")


@pytest.fixture(scope="module")
def single_run(bpe_dataset, tmp_path_factory):
    """The layouts' reference: 3 steps of `geex train` on one process, and its config file."""
    from tests.train.runs import run_geex, write_config

    folder = tmp_path_factory.mktemp("single")
    config = write_config(folder / "config.yaml", bpe_dataset, eval_every=3)
    run_geex("train", "--config", str(config), "--out", str(folder / "run"), "--no-progress")
    return folder / "run", config
