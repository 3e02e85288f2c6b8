"""Selective activation checkpointing (per op, every N-th block) gives the gradients of no
checkpointing on one process, recomputes what its mode says, and old boolean configs load.

Under tensor and sequence parallel (tp=2) the modes are compared with one device in
tests/train/test_sequence_parallel.py. `pytest tests/train/test_selective_checkpoint.py`.
"""

from __future__ import annotations

from collections import Counter

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from geex.cli import build_parser
from geex.cli.train import config_from_args
from geex.errors import ConfigError
from geex.model.checkpoint import clean_name
from geex.model.codegeex import build_model
from geex.model.config import ModelConfig
from geex.train.activation_checkpointing import checkpointed
from geex.train.config import ParallelConfig, TrainConfig
from geex.train.distributed import World
from geex.train.parallel import blocks, parallelize

CONFIG = ModelConfig(n_layer=3, n_head=4, d_model=32, max_seq_len=16, vocab_size=250)
ONE_PROCESS = World(0, 1, 0, torch.device("cpu"), None, 1)
# Projections with a bias are addmm; the top query layer's queries, from a position table
# expanded to the batch, are copied and take mm and an addition.
MATMULS = ("aten.addmm.default", "aten.mm.default")
ATTENTION = "aten._scaled_dot_product_flash_attention_for_cpu.default"


class OpCounts(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.counts = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.counts[str(func)] += 1
        return func(*args, **(kwargs or {}))


def model_with(mode: str, config: ModelConfig = CONFIG):
    model = build_model(config, seed=5)
    parallelize(model, ONE_PROCESS, ParallelConfig(activation_checkpointing=mode))
    return model


def loss_and_grads(mode: str, config: ModelConfig = CONFIG):
    torch.manual_seed(0)  # the dropout masks, when there is dropout
    model = model_with(mode, config)
    tokens = torch.randint(
        0, CONFIG.vocab_size, (2, 17), generator=torch.Generator().manual_seed(1)
    )
    loss = model(tokens[:, :-1], targets=tokens[:, 1:])
    backward = OpCounts()
    with backward:
        loss.backward()
    grads = {clean_name(n): p.grad for n, p in model.named_parameters()}
    return loss.detach(), grads, backward.counts


@pytest.fixture(scope="module")
def no_checkpointing():
    return loss_and_grads("none")


@pytest.mark.parametrize("mode", ["full", "selective-op", "selective-2", "selective-3"])
def test_mode_gives_the_loss_and_gradients_of_no_checkpointing(mode, no_checkpointing):
    loss, grads, _ = loss_and_grads(mode)
    expected_loss, expected_grads, _ = no_checkpointing
    torch.testing.assert_close(loss, expected_loss, rtol=1e-6, atol=0)
    assert grads.keys() == expected_grads.keys()
    for name, grad in expected_grads.items():
        torch.testing.assert_close(grads[name], grad, rtol=1e-5, atol=1e-7, msg=name)


@pytest.mark.parametrize("mode", ["full", "selective-op"])
def test_recomputed_dropout_draws_the_forward_masks_again(mode):
    dropout = CONFIG.replace(dropout=0.3)
    loss, grads, _ = loss_and_grads(mode, dropout)
    expected_loss, expected_grads, _ = loss_and_grads("none", dropout)
    torch.testing.assert_close(loss, expected_loss, rtol=1e-6, atol=0)
    for name, grad in expected_grads.items():
        torch.testing.assert_close(grads[name], grad, rtol=1e-5, atol=1e-7, msg=name)


def recomputed(mode: str, no_checkpointing) -> Counter:
    """Forward ops the backward pass of ``mode`` ran beyond those of no checkpointing, the
    matmuls of both kinds counted together as "matmul"."""
    _, _, counts = loss_and_grads(mode)
    extra = counts - no_checkpointing[2]
    extra["matmul"] = sum(extra.pop(name, 0) for name in MATMULS)
    return extra


def test_selective_op_recomputes_half_the_matmuls_and_no_attention(no_checkpointing):
    blocks_ = CONFIG.n_layer + 1  # the top query layer is a block too
    full = recomputed("full", no_checkpointing)
    assert full["matmul"] == 6 * blocks_ and full[ATTENTION] == blocks_
    selective = recomputed("selective-op", no_checkpointing)
    # Of q, k, v, dense, h->4h, 4h->h the 1st, 3rd and 5th outputs are kept.
    assert selective["matmul"] == 3 * blocks_
    assert selective[ATTENTION] == 0
    # The cheap ops are recomputed: both LayerNorms of every block.
    assert selective["aten.native_layer_norm.default"] == 2 * blocks_


def test_selective_n_recomputes_every_nth_block(no_checkpointing):
    # Four blocks (three layers and the top query layer): selective-2 wraps the 2nd and 4th.
    assert [checkpointed("selective-2", p) for p in (1, 2, 3, 4)] == [False, True, False, True]
    assert recomputed("selective-2", no_checkpointing)["matmul"] == 6 * 2
    model = model_with("selective-3")
    wrapped = [type(block).__name__ == "CheckpointWrapper" for _, _, block in blocks(model)]
    assert wrapped == [False, False, True, False]


@pytest.mark.parametrize(
    ("value", "mode"), [(True, "full"), (False, "none"), ("selective-4", "selective-4")]
)
def test_the_old_boolean_still_loads(value, mode):
    config = TrainConfig.from_dict({"parallel": {"activation_checkpointing": value}})
    assert config.parallel.activation_checkpointing == mode


@pytest.mark.parametrize("value", ["selective", "selective-0", "selective-x", "partial", "yes"])
def test_an_unknown_mode_is_refused_naming_the_valid_ones(value):
    with pytest.raises(ConfigError, match="none, full, selective-op, selective-N") as error:
        TrainConfig.from_dict({"parallel": {"activation_checkpointing": value}})
    assert repr(value) in str(error.value)


@pytest.mark.parametrize(
    ("flags", "mode"),
    [
        (["--activation-checkpointing"], "full"),
        (["--activation-checkpointing-mode", "selective-op"], "selective-op"),
        (["--activation-checkpointing-mode", "selective-2"], "selective-2"),
        ([], "none"),
    ],
)
def test_flags(flags, mode):
    args = build_parser().parse_args(["train", "--preset", "tiny", *flags])
    assert config_from_args(args).parallel.activation_checkpointing == mode


def test_the_memory_plan_orders_the_modes_and_splits_by_sequence():
    """`geex model info --plan`: the 13B's activations per GPU fall from none to selective-2
    to selective-op to full, and sequence parallel divides the block inputs by tp."""
    from geex.presets import model_preset
    from geex.train.memory_plan import memory_plan, parse_plan

    config = model_preset("codegeex-13b")

    def activations(text):
        return memory_plan(config, parse_plan(f"tp=8,dp=192,mbs=16,precision=fp16,{text}"))

    none, every_2nd = activations("ac=0"), activations("ac=selective-2")
    op, full = activations("ac=selective-op"), activations("ac=full")
    sizes = [p.row("activations").nbytes for p in (none, every_2nd, op, full)]
    assert sizes == sorted(sizes, reverse=True) and len(set(sizes)) == 4
    assert "ac=selective-op" in op.plan.describe() and "ac=1" in full.plan.describe()
    sequence_split = activations("ac=full,sp=1").row("activations").nbytes
    block_inputs = (config.n_layer + 1) * 2 * 2048 * 16 * config.d_model  # fp16 under FSDP2
    assert sizes[3] - sequence_split > block_inputs * 7 / 8  # each block's input / 8, and more


@pytest.mark.parametrize(
    ("text", "message"),
    [("ac=selective", "'ac' must be 1 or 0, selective-op or selective-N"), ("sp=1", "tp > 1")],
)
def test_bad_plan_values_are_refused(text, message):
    from geex.errors import GeexError
    from geex.train.memory_plan import parse_plan

    with pytest.raises(GeexError, match=message):
        parse_plan(text)
