"""Vocabulary-parallel embeddings, head and loss (tp=2, gloo, CPU) equal one device, unsplit.

Two processes build a tiny model with ``parallelize(tp=2)``; each must hold half of the word
embeddings and of the position tables, compute only its half of the logits, and give the same
loss, gradients and validation losses as the single-device model.
`pytest tests/train/test_vocab_parallel.py`.
"""

from __future__ import annotations

import os

import pytest
import torch
from torch import nn
from torch.distributed.tensor import DTensor, Shard, distribute_tensor
from torch.utils._python_dispatch import TorchDispatchMode

from geex.errors import ConfigError
from geex.model.codegeex import CodeGeeX, build_model
from geex.model.config import ModelConfig
from geex.model.loss import linear_cross_entropy, lm_loss
from geex.train.config import ParallelConfig
from geex.train.distributed import World, close_world, init_world
from geex.train.parallel import materialize, parallelize
from tests.conftest import free_port
from tests.train.spawn import spawn_ranks

CONFIG = ModelConfig(n_layer=2, n_head=4, d_model=32, max_seq_len=16, vocab_size=250)
SEED = 3
BATCH, SEQ = 3, 16


def batch() -> tuple[torch.Tensor, torch.Tensor]:
    tokens = torch.randint(
        0, CONFIG.vocab_size, (BATCH, SEQ + 1), generator=torch.Generator().manual_seed(7)
    )
    targets = tokens[:, 1:].clone()
    targets[0, :3] = -100  # ignored positions must stay ignored across the slices
    return tokens[:, :-1], targets


class LargestTensor(TorchDispatchMode):
    """The most elements any tensor an operator returns holds on this rank (a DTensor's
    local shard, not its global size)."""

    def __init__(self):
        super().__init__()
        self.numel = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else [out]:
            if isinstance(t, DTensor):
                t = t._local_tensor
            if isinstance(t, torch.Tensor):
                self.numel = max(self.numel, t.numel())
        return out


def _rank(rank: int, port: int, out: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
        WORLD_SIZE="2",
    )  # fmt: skip
    torch.manual_seed(0)
    world = init_world("cpu", tp=2)
    with torch.device("meta"):
        model = CodeGeeX(CONFIG)
    parallelize(model, world, ParallelConfig(tp=2))
    materialize(model, world.device, SEED)
    inputs, targets = batch()
    rows = {
        name: model.get_parameter(f"{name}.weight").to_local().shape[0]
        for name in ("word_embeddings", "position_embeddings", "top_query_embeddings")
    }
    largest = LargestTensor()
    with largest:
        loss = model(inputs, targets=targets)
        loss.backward()
    grads = {name: _full(p.grad) for name, p in model.named_parameters()}
    with torch.no_grad():
        logits = model(inputs)
        losses = lm_loss(logits, targets, reduction="none")
        text_losses = lm_loss(logits, targets, reduction="none", vocab=CONFIG.vocab_size)
        mean = lm_loss(logits, targets)
    result = dict(
        chunked=_chunked_loss(world),
        rows=rows, loss=loss.detach(), largest=largest.numel, grads=grads,
        placements=logits.placements, local_logits=tuple(logits.to_local().shape),
        losses=losses, text_losses=text_losses, mean=mean,
    )  # fmt: skip
    torch.save(result, f"{out}/rank{rank}.pt")
    close_world(world)


def chunked_inputs():
    """Hidden states, a head and targets for the fused loss alone, in several chunks."""
    generator = torch.Generator().manual_seed(11)
    hidden = torch.randn(BATCH, SEQ, CONFIG.d_model, generator=generator)
    head = torch.randn(CONFIG.padded_vocab_size, CONFIG.d_model, generator=generator)
    return hidden, head, batch()[1]


def _chunked_loss(world) -> dict:
    hidden, head, targets = chunked_inputs()
    hidden.requires_grad_()
    head = nn.Parameter(distribute_tensor(head, world.mesh["tp"], [Shard(0)]))
    loss = linear_cross_entropy(hidden, head, targets, chunk_rows=5)
    loss.backward()
    return dict(loss=loss.detach(), hidden=hidden.grad, head=head.grad.full_tensor())


def _full(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.full_tensor() if isinstance(tensor, DTensor) else tensor


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp("vocab_parallel")
    spawn_ranks(_rank, 2, free_port(), str(out))
    return [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(2)]


@pytest.fixture(scope="module")
def reference():
    model = build_model(CONFIG, seed=SEED)
    inputs, targets = batch()
    loss = model(inputs, targets=targets)
    loss.backward()
    with torch.no_grad():
        logits = model(inputs)
    return dict(
        loss=loss.detach(), grads={n: p.grad for n, p in model.named_parameters()},
        logits=logits, targets=targets,
    )  # fmt: skip


def test_each_rank_holds_half_the_vocabulary_and_positions(ranks):
    for result in ranks:
        assert result["rows"] == {
            "word_embeddings": CONFIG.padded_vocab_size // 2,
            "position_embeddings": CONFIG.max_seq_len // 2,
            "top_query_embeddings": CONFIG.max_seq_len // 2,
        }


def test_no_rank_holds_the_whole_vocabulary_logits(ranks):
    """The fused loss runs in one chunk here: the largest tensor a rank makes is that chunk's
    logits, for half the vocabulary. The whole vocabulary's would be twice as large, and the
    gradient of the whole word-embedding table (which torch's RowwiseParallel builds on every
    rank) a third larger."""
    tokens = BATCH * SEQ
    for result in ranks:
        assert result["largest"] == tokens * CONFIG.padded_vocab_size // 2
        assert result["largest"] < CONFIG.padded_vocab_size * CONFIG.d_model
        assert result["placements"] == (Shard(2),)
        assert result["local_logits"] == (BATCH, SEQ, CONFIG.padded_vocab_size // 2)


def test_loss_and_gradients_equal_one_device(ranks, reference):
    for result in ranks:
        torch.testing.assert_close(result["loss"], reference["loss"], rtol=1e-6, atol=0)
        assert result["grads"].keys() == reference["grads"].keys()
        for name, grad in reference["grads"].items():
            torch.testing.assert_close(result["grads"][name], grad, rtol=1e-5, atol=1e-7, msg=name)


def test_fused_loss_in_several_chunks_equals_one_device(ranks):
    hidden, head, targets = chunked_inputs()
    hidden.requires_grad_()
    head.requires_grad_()
    loss = linear_cross_entropy(hidden, head, targets, chunk_rows=5)
    loss.backward()
    for result in ranks:
        chunked = result["chunked"]
        torch.testing.assert_close(chunked["loss"], loss.detach(), rtol=1e-6, atol=0)
        torch.testing.assert_close(chunked["hidden"], hidden.grad, rtol=1e-5, atol=1e-7)
        torch.testing.assert_close(chunked["head"], head.grad, rtol=1e-5, atol=1e-7)


def test_validation_losses_from_sharded_logits_equal_one_device(ranks, reference):
    logits, targets = reference["logits"], reference["targets"]
    losses = lm_loss(logits, targets, reduction="none")
    text_losses = lm_loss(logits[..., : CONFIG.vocab_size], targets, reduction="none")
    assert not torch.equal(losses, text_losses)  # the padding rows do take probability
    for result in ranks:
        torch.testing.assert_close(result["losses"], losses, rtol=1e-5, atol=0)
        torch.testing.assert_close(result["text_losses"], text_losses, rtol=1e-5, atol=0)
        torch.testing.assert_close(result["mean"], lm_loss(logits, targets), rtol=1e-5, atol=0)


@pytest.mark.parametrize(
    ("changes", "numbers"),
    [({"padded_vocab_size": 250}, ("tp=4", "250")), ({"max_seq_len": 18}, ("tp=4", "18"))],
)
def test_a_vocabulary_or_context_that_does_not_divide_by_tp_is_refused(changes, numbers):
    config = ModelConfig(**{**CONFIG.__dict__, **changes})
    with torch.device("meta"):
        model = CodeGeeX(config)
    world = World(0, 4, 0, torch.device("cpu"), None, 4)
    with pytest.raises(ConfigError) as error:
        parallelize(model, world, ParallelConfig(tp=4))
    for number in numbers:
        assert number in str(error.value)
