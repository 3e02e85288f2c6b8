"""The memory plan counts exactly what Geex allocates (shards, saved activations) and refuses bad plans. `pytest tests/model/test_memory_plan.py`"""

from __future__ import annotations

import pytest
import torch

from geex.cli import main
from geex.errors import GeexError
from geex.model import build_model, num_params
from geex.model.config import ModelConfig
from geex.presets import model_preset
from geex.train.memory_plan import (
    Plan,
    activation_bytes,
    checkpointed_activation_bytes,
    loss_saved_bytes,
    memory_plan,
    parameter_counts,
    parse_plan,
    preset_defaults,
)

STATE_ROWS = ("parameters", "optimizer state", "gradients")
UNSHARDED_ROWS = ("gathered parameters", "activations", "head and loss")


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def test_13b_rank0_shard_at_tp8_dp192_is_derived_by_hand():
    # FSDP2 pads dim 0 of every (TP-local) tensor to dp equal chunks; rank 0 holds a full one.
    d, f, dp = 5120, 20480, 192
    rows = lambda n: ceil_div(n, dp)  # noqa: E731
    column_parallel = 3 * (rows(d // 8) * d + rows(d // 8)) + rows(f // 8) * d + rows(f // 8)
    row_parallel = rows(d) * (d // 8) + rows(d) + rows(d) * (f // 8) + rows(d)
    layernorms = 4 * rows(d)
    per_block = column_parallel + row_parallel + layernorms
    # The word embeddings and both position tables are split by rows over tp first.
    root = rows(52_224 // 8) * d + 2 * rows(2048 // 8) * d + 2 * rows(d)
    shard = 40 * per_block + root
    assert shard == 8_982_934

    plan = memory_plan(model_preset("codegeex-13b"), parse_plan("tp=8,dp=192"))
    assert plan.row("parameters").nbytes == 4 * shard
    assert plan.row("gradients").nbytes == 4 * shard
    assert plan.row("optimizer state").nbytes == 8 * shard


def test_13b_shards_divide_evenly_when_dp_divides_every_dimension():
    config = model_preset("codegeex-13b")
    d, f, tp, dp = 5120, 20480, 8, 8
    split_per_block = (
        4 * d * d + 3 * d + 2 * d * f + f
    )  # q, k, v, dense, MLP weights; colwise biases
    whole_per_block = 4 * d + 2 * d  # LayerNorms, row-parallel biases
    embeddings = (52_224 + 2 * 2048) * d  # split by rows (vocabulary, positions)
    split = 40 * split_per_block + embeddings
    whole = 40 * whole_per_block + 2 * d  # and the final LayerNorm
    assert split + whole == num_params(config)
    plan = memory_plan(config, Plan(tp=tp, dp=dp))
    assert plan.row("parameters").nbytes == 4 * (split // (tp * dp) + whole // dp)


def test_one_gpu_without_sharding_holds_every_parameter():
    config = model_preset("1.3b")
    counts = parameter_counts(config, tp=1, dp=1, fsdp=False)
    assert counts.sharded == counts.tp_local == num_params(config)


def test_more_data_parallel_ranks_shrink_sharded_state_only():
    config = model_preset("codegeex-13b")
    small, large = (memory_plan(config, Plan(tp=8, dp=dp)) for dp in (16, 192))
    for name in STATE_ROWS:
        assert large.row(name).nbytes < small.row(name).nbytes
    for name in UNSHARDED_ROWS:
        assert large.row(name).nbytes == small.row(name).nbytes
    assert large.peak < small.peak


def test_tensor_parallel_checkpointing_and_precision_shrink_the_working_set():
    config = model_preset("codegeex-13b")
    base = memory_plan(config, Plan(tp=2, dp=8, ac=False))
    assert memory_plan(config, Plan(tp=8, dp=2, ac=False)).row("activations").nbytes < (
        base.row("activations").nbytes
    )
    assert memory_plan(config, Plan(tp=2, dp=8, ac=True)).row("activations").nbytes < (
        base.row("activations").nbytes
    )
    fp32 = memory_plan(config, Plan(tp=2, dp=8, ac=False, precision="fp32"))
    assert fp32.row("activations").nbytes > base.row("activations").nbytes
    assert all(row.name != "compute copies" for row in fp32.rows)


def test_tensor_parallel_splits_the_vocabulary_of_the_head_and_loss():
    """Each TP rank holds 1/tp of the word embeddings and computes the logits of its slice."""
    config = model_preset("codegeex-13b")
    one, eight = (memory_plan(config, Plan(tp=tp, dp=1, mbs=1, seq=2048)) for tp in (1, 8))
    words = 52_224 * 5120
    assert parameter_counts(config, tp=8).word_embeddings == words // 8
    saved = loss_saved_bytes(config, 1, 2048, "bf16", fsdp=True)  # whole on each rank
    head_one = one.row("head and loss").nbytes - saved
    head_eight = eight.row("head and loss").nbytes - saved
    assert head_one == 8 * head_eight  # the chunk's logits and the head's gradient, both / 8
    assert head_eight < 4 * 2048 * 52_224  # less than the fp32 logits of the whole vocabulary


def test_a_vocabulary_that_does_not_divide_by_tp_is_refused():
    config = ModelConfig(n_layer=2, n_head=8, d_model=64, max_seq_len=64, vocab_size=500,
                         padded_vocab_size=500)  # fmt: skip
    with pytest.raises(GeexError, match=r"tp=8 must divide model.padded_vocab_size \(500\)"):
        memory_plan(config, parse_plan("tp=8"))


def test_ddp_keeps_whole_state_and_its_buckets():
    config = model_preset("350m")
    ddp = memory_plan(config, Plan(dp=8, fsdp=False))
    assert ddp.row("parameters").nbytes == 4 * num_params(config)
    assert ddp.row("DDP buckets").nbytes == 4 * num_params(config)
    assert all(row.name != "gathered parameters" for row in ddp.rows)
    # Without FSDP, bf16 runs under autocast, which keeps a cast of every matmul weight.
    autocast = memory_plan(config, Plan(dp=8, fsdp=False, precision="bf16"))
    assert autocast.row("compute copies").nbytes == 2 * parameter_counts(config).cast


TINY = ModelConfig(n_layer=2, n_head=4, d_model=64, max_seq_len=64, vocab_size=500)


def saved_activation_bytes(config, batch, seq, precision, *, fsdp=False) -> int:
    """Bytes of the distinct storages autograd saves for one training forward pass and loss,
    except token ids, 0-d scalars, and tensors shaped like a parameter: the parameters, their
    casts and the head's gradient the fused loss computes ahead (told apart by shape, possibly
    transposed: batch * seq is none of the model's dimensions here). ``fsdp``: the model runs
    as FSDP2's mixed precision runs each block, on parameters in the compute dtype without
    autocast; otherwise on fp32 parameters under autocast."""
    model = build_model(config)
    dtype = torch.bfloat16 if precision == "bf16" else None
    if fsdp and dtype is not None:
        model.to(dtype)
    shapes = [tuple(p.shape) for p in model.parameters()]
    parameter_shapes = set(shapes) | {shape[::-1] for shape in shapes}
    ids = torch.randint(0, config.vocab_size, (batch, seq + 1))
    storages = {}

    def pack(tensor):
        if (
            tensor.dim()
            and tensor.is_floating_point()
            and tuple(tensor.shape) not in parameter_shapes
        ):
            storage = tensor.untyped_storage()
            storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with (
        torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t),
        torch.autocast("cpu", dtype=dtype, enabled=dtype is not None and not fsdp),
    ):
        model(ids[:, :-1], targets=ids[:, 1:])  # the training path: the fused head and loss
    return sum(storages.values())


@pytest.mark.parametrize("fsdp", [False, True], ids=["autocast", "fsdp-mixed-precision"])
@pytest.mark.parametrize("precision", ["bf16", "fp32"])
@pytest.mark.parametrize("batch", [1, 3])  # batch > 1: the top query layer expands its queries
def test_activation_count_equals_the_tensors_autograd_saves(precision, batch, fsdp):
    seq = 48
    expected = activation_bytes(TINY, batch, seq, 1, precision, fsdp=fsdp)
    expected += loss_saved_bytes(TINY, batch, seq, precision, fsdp=fsdp)
    assert saved_activation_bytes(TINY, batch, seq, precision, fsdp=fsdp) == expected


def test_fsdp_mixed_precision_gathers_and_saves_in_the_compute_dtype():
    """Under FSDP2 bf16 a block is gathered at 2 bytes a parameter, no autocast copy is kept,
    and the residual stream (so every checkpointed block input) is bf16: half of fp32's."""
    config = model_preset("codegeex-13b")
    counts = parameter_counts(config, tp=8, dp=192)
    bf16 = memory_plan(config, Plan(tp=8, dp=192, precision="bf16"))
    fp32 = memory_plan(config, Plan(tp=8, dp=192, precision="fp32"))
    assert bf16.row("gathered parameters").nbytes == 2 * (counts.root + 2 * counts.block)
    assert fp32.row("gathered parameters").nbytes == 2 * bf16.row("gathered parameters").nbytes
    assert all(row.name != "compute copies" for row in bf16.rows)
    # The block's gradients in bf16, then FSDP's fp32 reduce-scatter input, padded to dp chunks.
    assert counts.block_padded > counts.block
    unsharded = 2 * (counts.root + counts.block) + 4 * counts.block_padded
    assert bf16.row("unsharded gradients").nbytes == unsharded
    sbh, sd = 2048 * 16 * 5120, 2048 * 5120  # seq x micro-batch x d_model, seq x d_model
    autocast = checkpointed_activation_bytes(config, 16, 2048, 8, "bf16")
    fsdp = checkpointed_activation_bytes(config, 16, 2048, 8, "bf16", fsdp=True)
    assert memory_plan(config, Plan(tp=8, dp=192, mbs=16)).row("activations").nbytes == fsdp
    # 39 blocks' and the top query layer's inputs and its queries at 2 bytes instead of 4; in the
    # block recomputed, q, k and v's one shared input (and the top query layer's queries) in
    # place of autocast's three casts: 3 x 2 bytes against 2 x 2.
    assert autocast - fsdp == 2 * (40 * sbh + sd) + 2 * sbh


@pytest.mark.parametrize(
    "text, message",
    [
        ("tp=8,pp=4", "unknown plan key 'pp'; valid keys: tp, dp, fsdp, mbs, seq, ac"),
        ("tp=8,dp", "plan item 'dp' is not key=value"),
        ("tp=eight", "'tp' must be a positive integer"),
        ("dp=0", "'dp' must be a positive integer"),
        ("ac=maybe", "'ac' must be 1 or 0"),
        ("precision=fp8", "'precision' must be one of fp32, bf16, fp16"),
        ("tp=2,tp=4", "'tp' is given twice"),
        ("tp=8,dp=2,fsdp=0", "needs fsdp=1"),
    ],
)
def test_bad_plans_name_the_key_and_the_valid_ones(text, message):
    with pytest.raises(GeexError, match=message):
        parse_plan(text)


def test_plans_the_model_cannot_take_are_refused():
    config = model_preset("codegeex-13b")
    with pytest.raises(GeexError, match="tp=3 must divide the number of heads"):
        memory_plan(config, parse_plan("tp=3"))
    with pytest.raises(GeexError, match="seq=4096 is longer"):
        memory_plan(config, parse_plan("seq=4096"))


def test_plan_string_keys_and_defaults():
    plan = parse_plan(" tp=8, dp=192 ,ac=0,precision=fp16,mbs=2,accum=4,fsdp=true ")
    assert plan == Plan(tp=8, dp=192, ac=False, precision="fp16", mbs=2, accum=4, fsdp=True)
    assert parse_plan("") == Plan()


def test_keys_not_given_follow_the_training_preset():
    config = model_preset("codegeex-13b")
    defaults = preset_defaults("codegeex-13b")  # 3,072 x 2,048 tokens, micro-batch 16, fp16
    plan = memory_plan(config, parse_plan("dp=192", defaults)).plan
    assert (plan.tp, plan.mbs, plan.precision, plan.fsdp, plan.ac) == (8, 16, "fp16", True, True)
    assert plan.accum == 1  # 3,072 sequences = 16 x 192
    assert memory_plan(config, parse_plan("dp=96", defaults)).plan.accum == 2
    assert memory_plan(config, parse_plan("dp=96,mbs=1,accum=3", defaults)).plan.accum == 3
    tiny = parse_plan("dp=2", preset_defaults("tiny"))  # tiny's precision is auto: bf16 on a GPU
    assert (tiny.fsdp, tiny.ac, tiny.precision) == (False, False, "bf16")


def test_model_info_prints_the_plan_under_the_model(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")  # one table row per line
    assert main(["model", "info", "--preset", "codegeex-13b", "--plan", "tp=8,dp=192"]) == 0
    out = capsys.readouterr().out
    assert out.index("weights in memory") < out.index("memory per GPU")
    assert "│ peak " in out and "of an 80 GiB A100/H100: fits" in out
    assert "tp=8 dp=192 fsdp=1 mbs=16 seq=2048 ac=1 precision=fp16 accum=1" in out
    assert main(["model", "info", "--preset", "tiny", "--plan", "tp=8,zz=1"]) == 2
    assert "unknown plan key 'zz'" in capsys.readouterr().err
