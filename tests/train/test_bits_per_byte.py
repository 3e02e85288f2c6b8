"""Validation bits per byte: information per byte of text, from the dataset's tokenizer.

`pytest tests/train/test_bits_per_byte.py`
"""

from __future__ import annotations

import math

import pytest
import torch

from geex.data.shards import TokenShards
from geex.errors import GeexError
from geex.tokenizer import load_tokenizer, train_tokenizer
from geex.train.distributed import World
from geex.train.monitor import final_validation, read_metrics, validation_line
from geex.train.trainer import train
from geex.train.validate import Validation
from tests.train.corpus import documents, write_tokenized_shards
from tests.train.test_trainer import config


class UniformLogits(torch.nn.Module):
    """Every token equally likely: ln(V) nats, log2(V) bits, per token."""

    def __init__(self, vocab_size: int) -> None:
        super().__init__()
        self.vocab_size = vocab_size

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return torch.zeros(*ids.shape, self.vocab_size)


ONE_PROCESS = World(0, 1, 0, torch.device("cpu"), None, 1)


def test_uniform_logits_give_log2_vocab_bits_per_text_token(bpe_dataset):
    """Over the tokenizer's ids: the rows a model pads its vocabulary with share none of the
    probability, as in geex eval's bits per byte; the loss (the training loss) keeps them."""
    tokenizer = load_tokenizer(bpe_dataset)
    shards = TokenShards(bpe_dataset, "validation")
    validation = Validation(shards, seq_len=32, eval_tokens=512, tokenizer=tokenizer)
    vocab, padded = tokenizer.vocab_size, tokenizer.vocab_size + 64
    model = UniformLogits(padded)
    measured = validation.measure(model, "fp32", micro_batch=3, world=ONE_PROCESS)

    special = set(tokenizer.special_tokens().values())
    totals = {"tokens": 0, "bytes": 0}
    for language, windows in validation.windows.items():
        targets = [[i for i in row[1:].tolist() if i not in special] for row in windows]
        tokens = sum(map(len, targets))
        # The corpus is ASCII, so each window's text decodes whole.
        nbytes = sum(len(tokenizer.decode(row).encode()) for row in targets)
        assert tokens < windows[:, 1:].numel()  # end-of-document tokens are left out
        assert measured["val_bpb"][language] == pytest.approx(math.log2(vocab) * tokens / nbytes)
        assert measured["val_loss"][language] == pytest.approx(math.log(padded))
        totals["tokens"] += tokens
        totals["bytes"] += nbytes
    expected = math.log2(vocab) * totals["tokens"] / totals["bytes"]
    assert measured["val_bpb"]["all"] == pytest.approx(expected)


def test_shards_without_a_tokenizer_get_the_loss_only(byte_dataset):
    validation = Validation(TokenShards(byte_dataset, "validation"), 32, 256)
    measured = validation.measure(UniformLogits(257), "fp32", 4, ONE_PROCESS)
    assert set(measured) == {"val_loss"}


def test_a_tokenizer_with_fewer_ids_than_the_shards_is_refused(tmp_path):
    folder = write_tokenized_shards(tmp_path / "data", "python", vocab_size=320)
    train_tokenizer([text for _, text in documents(50)], 300, languages=["python"]).save(folder)
    with pytest.raises(GeexError, match="has 300 ids but its shards declare 320"):
        Validation(TokenShards(folder, "validation"), 32, 256, load_tokenizer(folder))


def test_a_run_logs_and_reports_bits_per_byte_per_language(bpe_dataset, tmp_path):
    train(config(bpe_dataset, tmp_path), show_progress=False)
    records = read_metrics(tmp_path / "metrics.jsonl")
    validated = [r for r in records if "val_loss" in r]
    assert [r["step"] for r in validated] == [1, 3]
    assert all(set(r["val_bpb"]) == {"c", "python", "all"} for r in validated)
    final = validated[-1]["val_bpb"]
    assert all(math.isfinite(value) and value > 0 for value in final.values())
    # "all" pools the languages' bytes: it lies between them.
    assert min(final["c"], final["python"]) <= final["all"] <= max(final["c"], final["python"])
    assert final["all"] < validated[0]["val_bpb"]["all"]  # training lowers it
    line = validation_line(final_validation(records))
    assert line == (
        f"validation after 4 steps: loss {validated[-1]['val_loss']['all']:.4f} nats/token, "
        f"{final['all']:.4f} bits/byte"
    )
