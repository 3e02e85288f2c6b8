"""Sequence parallel under tensor parallel (tp=2, gloo, CPU) trains as one device does, on
half the positions per rank.

Two processes build a tiny model with ``parallelize(tp=2, sequence_parallel=True)``, alone and
with each activation-checkpointing mode, and train it 3 AdamW steps on the same tokens as one
process: losses and gradient norms must match to 1e-5 relative, weights to 2e-5 absolute
(fp32 reduction-order noise, as tests/train/test_distributed.py states). A hook on the
LayerNorms shows each rank holds ``seq / 2`` positions there; the refusals are tested too.
The layout through ``geex train`` (with FSDP on 4 processes) is tested end to end.
`pytest tests/train/test_sequence_parallel.py`.
"""

from __future__ import annotations

import os

import pytest
import torch
from torch.distributed.tensor import DTensor, Replicate

from geex.errors import ConfigError
from geex.model.checkpoint import clean_name
from geex.model.codegeex import CodeGeeX, build_model
from geex.model.config import ModelConfig
from geex.model.loss import lm_loss
from geex.train.config import OptimConfig, ParallelConfig
from geex.train.distributed import World, close_world, init_world
from geex.train.grad_norm import global_norm
from geex.train.optim import build_optimizer
from geex.train.parallel import materialize, parallelize
from tests.conftest import free_port
from tests.train.runs import run_geex
from tests.train.spawn import spawn_ranks
from tests.train.test_distributed import assert_same_run

CONFIG = ModelConfig(n_layer=2, n_head=4, d_model=32, max_seq_len=16, vocab_size=250)
SEED, STEPS, BATCH, SEQ = 3, 3, 3, 16
OPTIM = OptimConfig(lr=1e-3)
# Every layout the two ranks train, by name: ParallelConfig fields besides tp=2.
LAYOUTS = {
    "sequence parallel": {"sequence_parallel": True},
    "sequence parallel + full checkpointing": {
        "sequence_parallel": True,
        "activation_checkpointing": "full",
    },
    "sequence parallel + selective-op": {
        "sequence_parallel": True,
        "activation_checkpointing": "selective-op",
    },
    "sequence parallel + selective-2": {
        "sequence_parallel": True,
        "activation_checkpointing": "selective-2",
    },
    "tensor parallel + selective-op": {"activation_checkpointing": "selective-op"},
}


def batches() -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(7)
    out = []
    for _ in range(STEPS):
        tokens = torch.randint(0, CONFIG.vocab_size, (BATCH, SEQ + 1), generator=generator)
        targets = tokens[:, 1:].clone()
        targets[0, :3] = -100
        out.append((tokens[:, :-1], targets))
    return out


def train(model) -> dict:
    """Losses, gradient norms, final weights (whole) and validation losses after STEPS steps."""
    optimizer = build_optimizer(model, OPTIM)
    losses, norms = [], []
    for inputs, targets in batches():
        loss = model(inputs, targets=targets)
        loss.backward()
        norms.append(global_norm([p.grad for p in model.parameters()]))
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    inputs, targets = batches()[0]
    with torch.no_grad():
        validation = lm_loss(model(inputs), targets, reduction="none")
    weights = {clean_name(n): _whole(p.detach()) for n, p in model.named_parameters()}
    return dict(losses=losses, norms=norms, weights=weights, validation=validation)


def _whole(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.full_tensor() if isinstance(tensor, DTensor) else tensor


def _parallel_model(world, **fields) -> CodeGeeX:
    with torch.device("meta"):
        model = CodeGeeX(CONFIG)
    parallelize(model, world, ParallelConfig(tp=2, **fields))
    materialize(model, world.device, SEED)
    return model


def _rank(rank: int, port: int, out: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
        WORLD_SIZE="2",
    )  # fmt: skip
    world = init_world("cpu", tp=2)
    result = {name: train(_parallel_model(world, **fields)) for name, fields in LAYOUTS.items()}
    model = _parallel_model(world, sequence_parallel=True)
    result["shapes"] = _layernorm_shapes(model)
    result["grad_placements"] = _layernorm_grad_placements(model)
    try:
        model(torch.zeros(1, SEQ - 1, dtype=torch.long))
    except ConfigError as error:
        result["odd_sequence"] = str(error)
    torch.save(result, f"{out}/rank{rank}.pt")
    close_world(world)


def _layernorm_shapes(model) -> dict[str, tuple]:
    """The local shape of what each LayerNorm receives and returns, on this rank."""
    shapes = {}

    def record(name):
        def hook(_module, args, output):
            shapes[name] = (_local_shape(args[0]), _local_shape(output))

        return hook

    for name in ("layers.0.input_layernorm", "layers.1.post_attention_layernorm",
                 "final_layernorm", "top_query_layer.input_layernorm"):  # fmt: skip
        model.get_submodule(name).register_forward_hook(record(name))
    with torch.no_grad():
        model(batches()[0][0])
    return shapes


def _local_shape(tensor: torch.Tensor) -> tuple:
    return tuple(tensor.to_local().shape if isinstance(tensor, DTensor) else tensor.shape)


def _layernorm_grad_placements(model) -> set:
    inputs, targets = batches()[0]
    model(inputs, targets=targets).backward()
    return {
        model.get_parameter(f"{name}.weight").grad.placements
        for name in ("layers.0.input_layernorm", "final_layernorm")
    }


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp("sequence_parallel")
    spawn_ranks(_rank, 2, free_port(), str(out))
    return [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(2)]


@pytest.fixture(scope="module")
def reference():
    return train(build_model(CONFIG, seed=SEED))


@pytest.mark.parametrize("layout", LAYOUTS)
def test_layout_trains_as_one_device(layout, ranks, reference):
    for result in ranks:
        run = result[layout]
        torch.testing.assert_close(run["losses"], reference["losses"], rtol=1e-5, atol=0)
        torch.testing.assert_close(run["norms"], reference["norms"], rtol=1e-5, atol=0)
        assert run["weights"].keys() == reference["weights"].keys()
        for name, weight in reference["weights"].items():
            torch.testing.assert_close(run["weights"][name], weight, rtol=0, atol=2e-5, msg=name)
        torch.testing.assert_close(run["validation"], reference["validation"], rtol=1e-5, atol=0)


def test_layernorms_hold_half_the_positions_on_each_rank(ranks):
    """Between the matmuls each rank holds seq / tp positions of every sequence, the whole
    width: the LayerNorms' inputs and outputs, the final LayerNorm's included."""
    half = (BATCH, SEQ // 2, CONFIG.d_model)
    for result in ranks:
        assert result["shapes"] == {
            "layers.0.input_layernorm": (half, half),
            "layers.1.post_attention_layernorm": (half, half),
            "final_layernorm": (half, half),
            "top_query_layer.input_layernorm": (half, half),
        }


def test_layernorm_gradients_are_summed_over_the_ranks(ranks):
    """Each rank's LayerNorm sees its positions only; without FSDP the gradients must still
    reach the optimizer whole (replicated), not as each rank's share."""
    for result in ranks:
        assert result["grad_placements"] == {(Replicate(),)}


def test_a_sequence_tp_does_not_divide_is_refused_naming_both(ranks):
    for result in ranks:
        message = result["odd_sequence"]
        assert "tp=2" in message and f"{SEQ - 1} tokens" in message


def test_sequence_parallel_without_tensor_parallel_is_refused():
    with torch.device("meta"):
        model = CodeGeeX(CONFIG)
    world = World(0, 2, 0, torch.device("cpu"), None, 1)
    with pytest.raises(ConfigError, match=r"parallel.tp > 1 \(--tp\), got tp=1"):
        parallelize(model, world, ParallelConfig(tp=1, sequence_parallel=True))


def test_sequence_parallel_with_dropout_is_refused():
    with torch.device("meta"):
        model = CodeGeeX(CONFIG.replace(dropout=0.1))
    world = World(0, 2, 0, torch.device("cpu"), None, 2)
    with pytest.raises(ConfigError, match="model.dropout=0.1 would draw the same dropout masks"):
        parallelize(model, world, ParallelConfig(tp=2, sequence_parallel=True))


def test_geex_train_fsdp_x_tp_with_sequence_parallel_equals_one_process(single_run, tmp_path):
    """`geex train` on 2 x 2 processes (FSDP x TP), sequence parallel and selective-op
    checkpointing: the same run, validation and weights as one process."""
    reference, config = single_run
    run = tmp_path / "run"
    flags = ["--fsdp", "--tp", "2", "--sequence-parallel",
             "--activation-checkpointing-mode", "selective-op"]  # fmt: skip
    args = ["train", "--config", str(config), "--out", str(run), "--no-progress", *flags]
    run_geex(*args, nproc=4)
    assert_same_run(run, reference)


@pytest.mark.slow  # as the other 4-process bf16 layouts (test_fsdp_mixed_precision.py)
def test_geex_train_fsdp_x_tp_with_sequence_parallel_in_bf16_trains_like_one_process(
    bpe_dataset, tmp_path
):
    """The GPU path: FSDP2 gathers bf16 parameters, the sequence-sharded LayerNorms upcast to
    fp32 on their positions; within tests/train/test_fsdp_mixed_precision.py's bf16
    tolerances of the single-process autocast run."""
    from tests.train.runs import write_config
    from tests.train.test_fsdp_mixed_precision import assert_trains_like

    config = write_config(tmp_path / "config.yaml", bpe_dataset, eval_every=3, precision="bf16")
    args = ["train", "--config", str(config), "--no-progress"]
    run_geex(*args, "--out", str(tmp_path / "single"))
    flags = ["--fsdp", "--tp", "2", "--sequence-parallel", "--activation-checkpointing"]
    run_geex(*args, "--out", str(tmp_path / "run"), *flags, nproc=4)
    assert_trains_like(tmp_path / "run", tmp_path / "single", "bf16")
