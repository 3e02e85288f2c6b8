"""The memory plan's FSDP2 bf16 rows equal what 2 gloo ranks hold after a real training step.

Two processes shard a tiny CodeGeeX with ``parallelize(fsdp=True)`` in bf16 (FSDP2 mixed
precision), train one step with the trainer's AdamW, and count the bytes of their local
parameter, gradient and AdamW shards, of one block gathered, and of the gradients each
reduce-scatter starts from. The model's width (33) and context (15) are odd, so FSDP2 pads
most tensors to two equal chunks: the plan counts rank 0's, the larger, exactly, and rank 1
holds the rows left.
`pytest tests/train/test_memory_plan_ranks.py` (multi-process: about 10 s).
"""

from __future__ import annotations

import os

import pytest
import torch
import torch.multiprocessing as mp
from torch.distributed.fsdp._fully_shard import _fsdp_param_group

from geex.model.codegeex import CodeGeeX
from geex.model.config import ModelConfig
from geex.train.config import OptimConfig, ParallelConfig
from geex.train.distributed import close_world, init_world
from geex.train.memory_plan import Plan, memory_plan, parameter_counts
from geex.train.optim import build_optimizer
from geex.train.parallel import materialize, parallelize
from tests.conftest import free_port
from tests.train.spawn import spawn_ranks

CONFIG = ModelConfig(n_layer=2, n_head=3, d_model=33, max_seq_len=15, vocab_size=250)
BATCH, SEQ = 2, 15
PLAN = Plan(tp=1, dp=2, fsdp=True, mbs=BATCH, seq=SEQ, ac=False, precision="bf16", accum=1)


def rank_elements(rank: int) -> int:
    """Parameter elements ``rank`` of 2 holds: ceil(rows / 2) on rank 0, the rest on rank 1."""
    with torch.device("meta"):
        model = CodeGeeX(CONFIG)
    total = 0
    for param in model.parameters():
        rows = -(-param.shape[0] // 2) if rank == 0 else param.shape[0] // 2
        total += rows * param[0].numel()
    return total


def _local_nbytes(tensors) -> int:
    """Bytes a rank holds of these DTensors; 0-d tensors (AdamW's step counts) left out."""
    return sum(t.to_local().nbytes for t in tensors if t.dim())


def _record_reduce_scatters(calls: list) -> None:
    """Wrap FSDP2's gradient reduction to note, per call, the gradients' dtypes and bytes it
    is given and the bytes of the reduce-scatter input it allocates for them."""
    reduce = _fsdp_param_group.foreach_reduce

    def recording(fsdp_params, unsharded_grads, *args, **kwargs):
        dtypes = {str(g.dtype) for g in unsharded_grads}
        grads = sum(g.nbytes for g in unsharded_grads)
        result = reduce(fsdp_params, unsharded_grads, *args, **kwargs)
        calls.append({"dtypes": dtypes, "grads": grads, "input": result[0].nbytes,
                      "input_dtype": str(result[0].dtype)})  # fmt: skip
        return result

    _fsdp_param_group.foreach_reduce = recording


def _rank(rank: int, port: int, results) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
        WORLD_SIZE="2",
    )  # fmt: skip
    world = init_world("cpu")
    with torch.device("meta"):
        model = CodeGeeX(CONFIG)
    parallelize(model, world, ParallelConfig(fsdp=True), precision="bf16")
    materialize(model, world.device, seed=3)
    optimizer = build_optimizer(model, OptimConfig())
    calls: list = []
    _record_reduce_scatters(calls)
    tokens = torch.randint(0, CONFIG.vocab_size, (BATCH, SEQ + 1),
                           generator=torch.Generator().manual_seed(7))  # fmt: skip
    model(tokens[:, :-1], targets=tokens[:, 1:]).backward()
    optimizer.step()
    block = model.layers["0"]
    block.unshard()  # what FSDP2 gathers before the block runs
    gathered = {str(p.dtype) for p in block.parameters()}, sum(p.nbytes for p in block.parameters())
    block.reshard()
    state = [t for s in optimizer.state.values() for t in s.values()]
    results[rank] = {
        "parameters": _local_nbytes(model.parameters()),
        "gradients": _local_nbytes(p.grad for p in model.parameters()),
        "optimizer state": _local_nbytes(state),
        "state dtypes": {str(t.dtype) for t in state if t.dim()},
        "gathered block": gathered,
        "reduce-scatters": calls,
    }
    close_world(world)


@pytest.fixture(scope="module")
def ranks():
    with mp.Manager() as manager:
        results = manager.dict()
        spawn_ranks(_rank, 2, free_port(), results)
        return [results[rank] for rank in range(2)]


def test_rank_shards_equal_the_plan(ranks):
    plan = memory_plan(CONFIG, PLAN)
    assert plan.row("parameters").nbytes == 4 * rank_elements(0) > 4 * rank_elements(1)
    for rank, held in enumerate(ranks):
        fp32 = 4 * rank_elements(rank)
        assert (held["parameters"], held["gradients"]) == (fp32, fp32), rank
        assert held["optimizer state"] == 2 * fp32, rank  # AdamW's m and v
        assert held["state dtypes"] == {"torch.float32"}
    assert ranks[0]["parameters"] == plan.row("parameters").nbytes
    assert ranks[0]["gradients"] == plan.row("gradients").nbytes
    assert ranks[0]["optimizer state"] == plan.row("optimizer state").nbytes


def test_a_gathered_block_is_two_bytes_a_parameter(ranks):
    counts = parameter_counts(CONFIG, tp=1, dp=2)
    for held in ranks:
        assert held["gathered block"] == ({"torch.bfloat16"}, 2 * counts.block)
    gathered = memory_plan(CONFIG, PLAN).row("gathered parameters").nbytes
    assert gathered == 2 * (counts.root + 2 * counts.block)


def test_unsharded_gradients_are_bf16_then_an_fp32_reduce_scatter_input(ranks):
    counts = parameter_counts(CONFIG, tp=1, dp=2)
    for held in ranks:
        calls = held["reduce-scatters"]
        assert len(calls) == CONFIG.n_layer + 2  # the blocks, the top query layer, the root
        for call in calls:
            assert call["dtypes"] == {"torch.bfloat16"}
            assert call["input_dtype"] == "torch.float32"
        *blocks, root = calls
        assert all(call["grads"] == 2 * counts.block for call in blocks)
        assert all(call["input"] == 4 * counts.block_padded for call in blocks)
        assert root["grads"] == 2 * counts.root
        planned = memory_plan(CONFIG, PLAN).row("unsharded gradients").nbytes
        assert planned == root["grads"] + blocks[0]["grads"] + blocks[0]["input"]
