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
