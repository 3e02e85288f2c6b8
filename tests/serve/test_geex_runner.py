"""The Geex runner's slot pool: a batched decode of rows of different lengths equals each
sequence's own full forward pass; slots copy, swap and refuse positions they do not hold.
Run: pytest tests/serve/test_geex_runner.py"""

from __future__ import annotations

import pytest
import torch

from geex.errors import GeexError
from geex.model import ModelConfig, build_model
from geex.serve.geex_runner import GeexRunner

SEQUENCES = [[1, 2, 3, 4, 5], [7, 8], [9, 10, 11, 12, 13, 14, 15], [20, 21, 22]]


@pytest.fixture(scope="module")
def model():
    config = ModelConfig(n_layer=2, n_head=2, d_model=32, max_seq_len=32, vocab_size=100,
                         init_std=0.1)  # fmt: skip
    return build_model(config, seed=0).eval()


def full_logits(model, ids) -> torch.Tensor:
    with torch.no_grad():
        return model(torch.tensor([ids]))[0, -1, :100]


@pytest.mark.parametrize("order", [[0, 1, 2, 3], [3, 1, 0], [2]])
def test_batched_decode_equals_each_sequence_alone(model, order):
    runner = GeexRunner(model, num_slots=4)
    for slot, ids in enumerate(SEQUENCES):
        runner.prefill(slot, ids[:-1], 0)
    logits = runner.decode(
        order, [SEQUENCES[s][-1] for s in order], [len(SEQUENCES[s]) - 1 for s in order]
    )
    assert logits.shape == (len(order), 100) and logits.dtype == torch.float32
    for row, slot in enumerate(order):
        torch.testing.assert_close(logits[row], full_logits(model, SEQUENCES[slot]))
        assert runner.lengths[slot] == len(SEQUENCES[slot])


def test_prefill_keeps_a_prefix_and_copy_and_swap_move_caches(model):
    runner = GeexRunner(model, num_slots=3)
    runner.prefill(0, [1, 2, 3, 4], 0)
    runner.prefill(0, [9, 9], 2)  # keeps 1, 2; replaces 3, 4
    runner.copy_slot(0, 1, 3)  # 1, 2, 9
    runner.prefill(2, [5, 6], 0)
    runner.swap_slots(1, 2)  # slot 1: 5, 6; slot 2: 1, 2, 9
    assert runner.lengths == [4, 2, 3]
    logits = runner.decode([0, 1, 2], [7, 7, 7], [4, 2, 3])
    for row, ids in enumerate([[1, 2, 9, 9, 7], [5, 6, 7], [1, 2, 9, 7]]):
        torch.testing.assert_close(logits[row], full_logits(model, ids))


def test_positions_a_slot_does_not_hold_are_refused(model):
    runner = GeexRunner(model, num_slots=2)
    runner.prefill(0, [1, 2], 0)
    with pytest.raises(GeexError, match="holds 2 positions; cannot decode at 5"):
        runner.decode([0], [3], [5])
    with pytest.raises(GeexError, match="cannot start at 3"):
        runner.prefill(0, [3], 3)
    with pytest.raises(GeexError, match="slot 2 is not in 0..1"):
        runner.copy_slot(0, 2, 1)
    with pytest.raises(GeexError, match="twice"):
        runner.decode([0, 0], [3, 3], [2, 2])
    with pytest.raises(GeexError, match="do not fit the context of 32"):
        runner.prefill(1, list(range(33)), 0)


def test_the_pool_is_allocated_once_at_its_full_size(model):
    runner = GeexRunner(model, num_slots=3)
    config = model.config
    expected = 2 * config.n_attention_layers * 3 * config.max_seq_len * config.d_model * 4
    assert runner.cache_bytes == expected
    pointers = [k.data_ptr() for k in runner.keys]
    runner.prefill(0, [1, 2, 3], 0)
    runner.decode([0], [4], [3])
    assert [k.data_ptr() for k in runner.keys] == pointers


def test_the_served_text_leaves_special_tokens_out():
    from geex.eval.problems import load_embedded
    from geex.serve.geex_runner import GeexCodec
    from geex.tokenizer import train_tokenizer

    texts = [p.prompt for p in load_embedded(["python"])]
    tokenizer = train_tokenizer(texts * 2, vocab_size=400, languages=["python"])
    codec = GeexCodec(tokenizer)
    ids = [*codec.encode("x = 1"), tokenizer.fim_middle_id, *codec.encode("\n    y")]
    assert codec.decode(ids) == "x = 1\n    y"
    assert "<|fim_middle|>" in tokenizer.decode(ids)  # the tokenizer itself writes them out
