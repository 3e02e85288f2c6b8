"""Shards, packed samples and document masks: exact contents and order. `pytest tests/train`."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from geex.data.shards import ShardWriter, TokenShards, token_dtype
from geex.errors import GeexError
from geex.train.data import PackedSamples, document_positions_and_mask, micro_batch_start


def write(folder, docs, vocab=100, shard_tokens=1 << 20):
    writer = ShardWriter(folder, vocab_size=vocab, eod_id=0, shard_tokens=shard_tokens)
    for tokens, language, split in docs:
        writer.add(tokens, language, split)
    return writer.close()


def test_shards_hold_documents_with_eod_and_their_languages(tmp_path):
    docs = [([5, 6, 7], "python", "train"), ([8, 9], "go", "train"), ([3], "python", "validation")]
    write(tmp_path, docs, shard_tokens=4)  # forces one document per shard file
    train = TokenShards(tmp_path, "train")
    assert len(train) == 7 and train.read(0, 7).tolist() == [5, 6, 7, 0, 8, 9, 0]
    assert train.read(2, 4).tolist() == [7, 0, 8, 9]  # across a shard boundary
    assert train.documents["length"].tolist() == [4, 3]
    assert [train.languages[i] for i in train.documents["language"]] == ["python", "go"]
    assert train.documents_of("go")["offset"].tolist() == [4]
    assert TokenShards(tmp_path, "validation").read(0, 2).tolist() == [3, 0]


def test_uint16_until_the_vocabulary_needs_more():
    assert token_dtype(50_400) == np.uint16 and token_dtype(70_000) == np.uint32


def test_an_unfinished_or_foreign_folder_is_a_clear_error(tmp_path):
    with pytest.raises(GeexError, match="dataset.json is missing"):
        TokenShards(tmp_path)
    write(tmp_path, [([1, 2], "c", "train")])
    with pytest.raises(GeexError, match="no 'validation' split"):
        TokenShards(tmp_path, "validation")
    writer = ShardWriter(tmp_path / "w", vocab_size=10, eod_id=0)
    with pytest.raises(GeexError, match=r"token ids must be in \[0, 10\)"):
        writer.add([3, 12], "c")


def test_samples_cover_every_window_once_per_epoch_in_a_seeded_order(tmp_path):
    write(tmp_path, [(list(range(1, 41)), "c", "train")])  # 41 tokens: 5 windows of 8+1
    samples = PackedSamples(TokenShards(tmp_path), seq_len=8, seed=3)
    epoch = samples.batch(0, 5)
    starts = sorted(int(row[0]) for row in epoch)
    assert starts == [1, 9, 17, 25, 33] and epoch.shape == (5, 9)
    again = PackedSamples(TokenShards(tmp_path), seq_len=8, seed=3)
    assert torch.equal(again.batch(2, 3), epoch[2:5])  # random access, same order
    second = samples.batch(5, 5)
    assert sorted(int(r[0]) for r in second) == starts and not torch.equal(second, epoch)


def test_too_little_data_is_a_clear_error(tmp_path):
    write(tmp_path, [([1, 2, 3], "c", "train")])
    with pytest.raises(GeexError, match="not even one sequence"):
        PackedSamples(TokenShards(tmp_path), seq_len=64, seed=0)


@pytest.mark.parametrize("dp", [1, 2, 4])
def test_every_data_parallel_degree_consumes_the_same_samples(dp):
    global_batch, micro = 16, 2
    accumulation = global_batch // (micro * dp)
    seen = sorted(
        micro_batch_start(
            3, m, r, global_batch=global_batch, micro_batch=micro, accumulation=accumulation
        )
        + i
        for r in range(dp)
        for m in range(accumulation)
        for i in range(micro)
    )
    assert seen == list(range(48, 64))


def test_document_reset_restarts_positions_and_blocks_attention():
    ids = torch.tensor([[5, 6, 0, 7, 8, 9, 0, 4]])
    positions, mask = document_positions_and_mask(ids, eod_id=0)
    assert positions.tolist() == [[0, 1, 2, 0, 1, 2, 3, 0]]
    m = mask[0, 0]
    assert m[4].tolist() == [False, False, False, True, True, False, False, False]
    assert m[2].tolist() == [
        True,
        True,
        True,
        False,
        False,
        False,
        False,
        False,
    ]  # eod sees its doc
    assert m[7].tolist() == [False] * 7 + [True]
