"""A sharded start (fsdp, tp, fsdp x tp; gloo, CPU) equals one device and holds only its shards.

Initial values drawn a block of rows at a time are those of one draw of the whole tensor, so
``materialize`` on 2 or 4 ranks equals the single-device initialisation bit for bit;
``--init-from`` read as slices (or broadcast by rank 0) equals the checkpoint; and a rank's
peak resident memory while it initialises its shards, or loads them from a 285 MB checkpoint,
grows by its shard plus at most ``OVERHEAD``, not by the model.
`pytest tests/train/test_sharded_start.py` (multi-process: about a minute).
"""

from __future__ import annotations

import math
import os
import zlib
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file
from torch.distributed.tensor import DTensor

import geex.model.codegeex as codegeex
from geex.errors import GeexError
from geex.model.checkpoint import SliceReader, save_checkpoint, write_safetensors
from geex.model.codegeex import CodeGeeX, build_model
from geex.model.config import ModelConfig
from geex.train.config import ParallelConfig
from geex.train.distributed import close_world, init_world
from geex.train.parallel import materialize, parallelize
from geex.train.sharded_start import (
    load_sharded_weights,
    local_shard_from_rank0,
    shard_indices,
)
from tests.conftest import free_port
from tests.train.runs import losses, run_geex, write_config
from tests.train.spawn import spawn_ranks
from tests.train.test_distributed import assert_same_run

# d_model 34 and 2 heads: tensor parallel splits every block in 2, and FSDP under it then
# shards 17 rows into 9 and 8, so uneven and strided shards are both exercised.
CONFIG = ModelConfig(n_layer=2, n_head=2, d_model=34, max_seq_len=16, vocab_size=250)
SEED = 5
LAYOUTS = {
    "fsdp": (2, ParallelConfig(fsdp=True)),
    "tp": (2, ParallelConfig(tp=2)),
    "fsdp x tp (2 x 2)": (4, ParallelConfig(fsdp=True, tp=2)),
}

# The memory test's model: 71M parameters, 285 MB in fp32.
BIG = ModelConfig(n_layer=4, n_head=8, d_model=1024, max_seq_len=64, vocab_size=8000)
# What a rank may hold beyond its shards while it initialises or loads them: one tensor's
# shard as drawn or read (the largest here, half the word embeddings, is 16 MiB), a few 4 MiB
# blocks of initial values, and what a first call of torch's kernels maps and the allocator
# keeps (measured: 10 to 45 MiB in all).
OVERHEAD = 64 * 2**20


def _join(rank: int, world_size: int, port: int, parallel: ParallelConfig, config: ModelConfig):
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world_size),
    )  # fmt: skip
    world = init_world("cpu", tp=parallel.tp)
    with torch.device("meta"):
        model = CodeGeeX(config)
    return world, model


def _spawn(fn, nprocs: int, *args) -> list[dict]:
    with mp.Manager() as manager:
        results = manager.dict()
        spawn_ranks(fn, nprocs, nprocs, free_port(), results, *args)
        return [results[rank] for rank in range(nprocs)]


# -- one process ----------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(1003, 7), (250, 33), (17, 3), (4097, 1), (37,), (5,)])
def test_row_blocks_draw_what_one_whole_draw_does(shape, monkeypatch):
    """The property the sharded start rests on; pinned because a torch upgrade could break it
    (the init values of every earlier run would then change too)."""
    monkeypatch.setattr(codegeex, "INIT_BLOCK_VALUES", 64)
    model = build_model(CONFIG, device="meta")
    model.get_parameter("word_embeddings.weight").data = torch.empty(shape, device="meta")
    name = "word_embeddings.weight"
    blocks = list(model.initial_row_blocks(name, SEED))
    if math.prod(shape) > 2 * 64:
        assert len(blocks) > 1
    seed = SEED * 1_000_003 + zlib.crc32(name.encode())
    whole = torch.randn(shape, generator=torch.Generator().manual_seed(seed))
    assert torch.equal(torch.cat([rows for _, rows in blocks]), whole * model.config.init_std)


def test_slice_reader_reads_rows_and_columns_of_every_file(tmp_path):
    tensors = {
        "a": torch.randn(9, 12).to(torch.bfloat16),
        "b": torch.arange(40, dtype=torch.float32).reshape(8, 5),
        "c": torch.randn(7),
    }
    write_safetensors(tensors, tmp_path, max_shard_bytes=200)  # one file a tensor, an index
    assert (tmp_path / "model.safetensors.index.json").is_file()
    reader = SliceReader(tmp_path)
    rows, cols = torch.tensor([6, 7, 8, 1, 2]), torch.tensor([3, 4, 5, 9])
    assert torch.equal(reader.read("a", rows, cols), tensors["a"][rows][:, cols])
    assert torch.equal(reader.read("b", rows - 1), tensors["b"][rows - 1])
    assert torch.equal(reader.read("b"), tensors["b"])
    assert torch.equal(reader.read("c", torch.tensor([2, 3])), tensors["c"][2:4])
    assert reader.read("a", torch.tensor([], dtype=torch.long), cols).shape == (0, 4)
    with pytest.raises(GeexError, match="holds no tensor 'd'"):
        reader.read("d")
    with pytest.raises(IndexError, match="rows of b"):
        reader.read("b", torch.tensor([8]))


def test_slice_reader_refuses_a_truncated_file(tmp_path):
    save_checkpoint(build_model(CONFIG, seed=SEED), tmp_path)
    path = tmp_path / "model.safetensors"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(GeexError, match="is not a complete safetensors file"):
        SliceReader(tmp_path)


def test_one_process_loads_the_checkpoint_whole(tmp_path):
    save_checkpoint(build_model(CONFIG, seed=SEED + 1), tmp_path)
    model = build_model(CONFIG, device="meta")
    model.to_empty(device="cpu")
    load_sharded_weights(model, tmp_path)
    saved = load_file(tmp_path / "model.safetensors")
    for name, param in model.named_parameters():
        assert torch.equal(param.detach(), saved[name]), name


# -- every layout: initial values and loaded weights ----------------------------------------------


def _layout_rank(rank, world_size, port, results, parallel, folder):
    codegeex.INIT_BLOCK_VALUES = 64  # several blocks per matrix, as at 13B
    world, model = _join(rank, world_size, port, parallel, CONFIG)
    parallelize(model, world, parallel)
    materialize(model, world.device, SEED)
    single = build_model(CONFIG, seed=SEED)
    initial = [n for n, p in model.named_parameters() if not torch.equal(_full(p), single.get_parameter(n))]  # fmt: skip
    model.to_empty(device=world.device)
    load_sharded_weights(model, folder)
    reader = SliceReader(folder)
    loaded = [n for n, p in model.named_parameters() if not torch.equal(_full(p), reader.read(n).float())]  # fmt: skip
    broadcast = [
        n for n, p in model.named_parameters()
        if isinstance(p, DTensor) and not torch.equal(local_shard_from_rank0(reader, n, p), reader.read(n, *shard_indices(p)))
    ]  # fmt: skip
    placements = {str(p.placements) for p in model.parameters() if isinstance(p, DTensor)}
    results[rank] = dict(initial=initial, loaded=loaded, broadcast=broadcast, placements=placements)
    close_world(world)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_sharded_start_equals_one_device(layout, tmp_path):
    nprocs, parallel = LAYOUTS[layout]
    # As `geex convert codegeex` writes CodeGeeX-13B: fp16, in several files and an index.
    save_checkpoint(
        build_model(CONFIG, seed=SEED + 1), tmp_path, dtype=torch.float16, max_shard_bytes=30_000
    )
    assert len(list(tmp_path.glob("model-*-of-*.safetensors"))) > 2
    for rank, result in enumerate(_spawn(_layout_rank, nprocs, parallel, str(tmp_path))):
        assert result["initial"] == [], (rank, "initial values differ")
        assert result["loaded"] == [], (rank, "loaded weights differ from the checkpoint")
        assert result["broadcast"] == [], (rank, "rank 0's broadcast differs from the slices")
    if layout == "fsdp x tp (2 x 2)":
        assert any("_StridedShard" in p for p in result["placements"])


def _full(param: torch.Tensor) -> torch.Tensor:
    """A parameter's whole value, gathered if it is sharded (tensor parallel leaves the
    LayerNorms whole)."""
    return param.full_tensor() if isinstance(param, DTensor) else param


# -- peak memory while loading --------------------------------------------------------------------


def _resident() -> dict[str, int]:
    """This process's resident memory now and at its peak, in bytes (Linux /proc)."""
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) * 1024
    return fields


def _memory_rank(rank, world_size, port, results, parallel, folder, step):
    world, model = _join(rank, world_size, port, parallel, BIG)
    parallelize(model, world, parallel)
    Path("/proc/self/clear_refs").write_text("5")  # the peak starts again from now
    before = _resident()["VmRSS"]
    if step == "initialise":
        materialize(model, world.device, SEED)
    else:  # the trainer's --init-from: the shards allocated, then read
        model.to_empty(device=world.device)
        load_sharded_weights(model, folder)
    growth = _resident()["VmHWM"] - before
    shard = sum(_local(p).nbytes for p in model.parameters())
    if step == "initialise":
        single = build_model(BIG, seed=SEED)
        expected = {n: single.get_parameter(n).detach() for n, _ in model.named_parameters()}
    else:
        reader = SliceReader(folder)
        expected = {n: reader.read(n) for n, _ in model.named_parameters()}
    wrong = [n for n, p in model.named_parameters() if not torch.equal(_full(p), expected[n])]
    results[rank] = dict(growth=growth, shard=shard, wrong=wrong)
    close_world(world)


def _local(param: torch.Tensor) -> torch.Tensor:
    return param.to_local() if isinstance(param, DTensor) else param


@pytest.fixture(scope="module")
def big_checkpoint(tmp_path_factory):
    folder = tmp_path_factory.mktemp("big")
    save_checkpoint(build_model(BIG, seed=SEED), folder)
    return folder


@pytest.mark.skipif(
    not os.access("/proc/self/clear_refs", os.W_OK), reason="needs Linux's /proc/self/clear_refs"
)
@pytest.mark.parametrize("layout", ["fsdp", "tp"])
@pytest.mark.parametrize("step", ["load", "initialise"])
def test_a_rank_holds_its_shard_not_the_model_at_start(step, layout, big_checkpoint):
    """Initialising, or loading with ``--init-from`` (the trainer's way: the shards allocated,
    then read), grows a rank's peak resident memory by its shard plus ``OVERHEAD``."""
    nprocs, parallel = LAYOUTS[layout]
    stored = SliceReader(big_checkpoint).tensors.values()
    model_bytes = sum(math.prod(t.shape) * t.dtype.itemsize for t in stored)
    results = _spawn(_memory_rank, nprocs, parallel, str(big_checkpoint), step)
    for rank, result in enumerate(results):
        print(f"{step}, {layout} rank {rank}: shard {result['shard'] / 2**20:.0f} MiB of "
              f"{model_bytes / 2**20:.0f} MiB, peak growth {result['growth'] / 2**20:.0f} MiB")  # fmt: skip
        assert result["wrong"] == [], rank
        assert result["shard"] < 0.6 * model_bytes
        assert result["growth"] < result["shard"] + OVERHEAD, rank


# -- the trainer ----------------------------------------------------------------------------------


def test_fine_tuning_on_fsdp_x_tp_starts_from_the_checkpoint_like_one_process(
    bpe_dataset, tmp_path
):
    """``geex train --init-from`` on 4 ranks (FSDP x TP, 2 x 2), each reading its slices,
    trains like the single process that loads the checkpoint whole."""
    config = write_config(tmp_path / "config.yaml", bpe_dataset, eval_every=3)
    args = ["train", "--config", str(config), "--no-progress"]
    run_geex(*args, "--out", str(tmp_path / "base"))
    init = ["--init-from", str(tmp_path / "base" / "model")]
    run_geex(*args, *init, "--out", str(tmp_path / "one"))
    run_geex(*args, *init, "--out", str(tmp_path / "four"), "--fsdp", "--tp", "2", nproc=4)
    assert_same_run(tmp_path / "four", tmp_path / "one")
    assert losses(tmp_path / "one")[0] < losses(tmp_path / "base")[0] - 0.2  # not from scratch
