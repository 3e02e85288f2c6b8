"""FSDP2 mixed precision (bf16/fp16 gathers, fp32 reduce-scatters and master weights) on gloo CPU
ranks trains like the single-process autocast run, at half the all-gather bytes.
`pytest tests/train/test_fsdp_mixed_precision.py` (multi-process: run one test id at a time).

The sharded runs compute in the low dtype throughout, the residual stream included, where
single-process autocast keeps the residual stream (and the embeddings' sum) in fp32: the two
agree to the low dtype's rounding, not to fp32 reduction noise. The tolerances are about 5x
the differences measured over the 3 steps on this corpus (bf16: losses 7e-5, gradient norms
7e-4, validation 9e-5, weight matrices 7e-3; fp16, with 3 more mantissa bits: 3e-6, 6e-5,
9e-6, 3e-3), far below what a broken layout gives (gradients summed instead of averaged, a
rank's shard lost). That the gathers are in the low dtype is checked by counting their bytes,
that weights and AdamW's state stay fp32 by reading the checkpoint.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
import torch.distributed.checkpoint as dcp
from safetensors.torch import load_file

from geex.train.monitor import final_validation, read_metrics
from geex.train.parallel import mixed_precision_policy
from tests.train.runs import geex_command, grad_norms, losses, run_geex, write_config

REPO = Path(__file__).resolve().parents[2]
LR = 1e-3  # write_config's
STEPS = 3

# Losses, gradient norms and validation: relative. Weight matrices: the relative norm of each
# one's difference.
TOLERANCES = {
    "bf16": {"loss": 5e-4, "grad_norm": 5e-3, "validation": 5e-4, "matrices": 2e-2},
    "fp16": {"loss": 2e-5, "grad_norm": 5e-4, "validation": 5e-5, "matrices": 1e-2},
}
# Every weight, biases included: AdamW moves a weight by up to about lr per step whatever the
# gradient's size, so where two runs round a tiny gradient to opposite signs they part by 2 lr
# a step. Key biases show it most (their true gradient is zero: the softmax ignores a shift
# shared by every key), and zero-initialised biases have no norm to be relative to.
WEIGHT_ATOL = 2 * LR * STEPS


@pytest.fixture(scope="module")
def single(bpe_dataset, tmp_path_factory):
    """The single-process autocast run of each precision, trained on first use."""
    runs = {}

    def run(precision: str):
        if precision not in runs:
            folder = tmp_path_factory.mktemp(f"single-{precision}")
            config = write_config(
                folder / "config.yaml", bpe_dataset, eval_every=STEPS, precision=precision
            )
            run_geex("train", "--config", str(config), "--out", str(folder / "run"),
                     "--no-progress")  # fmt: skip
            runs[precision] = (folder / "run", config)
        return runs[precision]

    return run


def assert_trains_like(run: Path, reference: Path, precision: str) -> None:
    tolerance = TOLERANCES[precision]
    torch.testing.assert_close(losses(run), losses(reference), rtol=tolerance["loss"], atol=0)
    torch.testing.assert_close(
        grad_norms(run), grad_norms(reference), rtol=tolerance["grad_norm"], atol=0
    )
    validation = final_validation(read_metrics(run / "metrics.jsonl"))
    expected = final_validation(read_metrics(reference / "metrics.jsonl"))
    torch.testing.assert_close(validation, expected, rtol=tolerance["validation"], atol=0)
    mine = load_file(run / "model" / "model.safetensors")
    theirs = load_file(reference / "model" / "model.safetensors")
    assert mine.keys() == theirs.keys()
    for name, expected_weight in theirs.items():
        weight = mine[name]
        assert weight.dtype == torch.float32, f"{name} saved in {weight.dtype}"
        torch.testing.assert_close(weight, expected_weight, rtol=0, atol=WEIGHT_ATOL, msg=name)
        if weight.ndim == 2:
            relative = float((weight - expected_weight).norm() / expected_weight.norm())
            assert relative <= tolerance["matrices"], f"{name}: relative difference {relative:.1e}"


def test_the_policy_gathers_in_the_compute_dtype_and_reduces_in_fp32():
    bf16, fp16 = mixed_precision_policy("bf16"), mixed_precision_policy("fp16")
    assert (bf16.param_dtype, bf16.reduce_dtype) == (torch.bfloat16, torch.float32)
    assert (fp16.param_dtype, fp16.reduce_dtype) == (torch.float16, torch.float32)
    fp32 = mixed_precision_policy("fp32")
    assert fp32.param_dtype is None and fp32.reduce_dtype is None
    with pytest.raises(ValueError, match="not 'auto'.*resolve_precision"):
        mixed_precision_policy("auto")


def test_all_gathers_carry_half_the_bytes_of_fp32():
    """The bf16 and fp16 all-gathers move half of fp32's bytes; reduce-scatters, the sharded
    parameters and their gradients stay fp32."""
    command = [
        *geex_command(nproc=2)[:-2],  # torchrun, without `-m geex`
        str(REPO / "benchmarks" / "fsdp_traffic.py"), "--preset", "tiny", "--json",
    ]  # fmt: skip
    result = run_command(command)
    rows = json.loads(result.stdout.strip().splitlines()[-1])
    fp32 = rows["fp32"]
    assert fp32["all_gather_dtypes"] == ["float32"] and fp32["all_gather_bytes"] > 0
    for precision, dtype in (("bf16", "bfloat16"), ("fp16", "float16")):
        row = rows[precision]
        assert row["all_gather_dtypes"] == [dtype]
        assert 2 * row["all_gather_bytes"] == fp32["all_gather_bytes"]
        assert row["reduce_scatter_dtypes"] == ["float32"]
        assert row["reduce_scatter_bytes"] == fp32["reduce_scatter_bytes"]
        assert row["sharded_parameter_dtypes"] == row["sharded_gradient_dtypes"] == ["float32"]


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_fsdp_mixed_precision_equals_single_process(precision, single, tmp_path):
    reference, config = single(precision)
    run = tmp_path / "run"
    run_geex("train", "--config", str(config), "--out", str(run), "--no-progress", "--fsdp",
             nproc=2)  # fmt: skip
    assert_trains_like(run, reference, precision)
    if precision == "fp16":  # the loss scaler ran, and agreed with one process's
        scales = [r["loss_scale"] for r in read_metrics(run / "metrics.jsonl")]
        expected = [r["loss_scale"] for r in read_metrics(reference / "metrics.jsonl")]
        assert scales == expected


TP_X_FSDP = {
    "activation-checkpointing": ["--activation-checkpointing"],
    "compile": ["--compile"],
    "activation-checkpointing+compile": ["--activation-checkpointing", "--compile"],
}


@pytest.mark.slow
@pytest.mark.parametrize("variant", TP_X_FSDP)
def test_tp_x_fsdp_bf16_equals_single_process(variant, single, tmp_path):
    """2 x 2 (tensor parallel x FSDP) in bf16: tensor parallel's all-reduces also sum bf16
    partial outputs, within the same tolerances."""
    reference, config = single("bf16")
    run = tmp_path / "run"
    args = ["train", "--config", str(config), "--out", str(run), "--no-progress"]
    result = run_geex(*args, "--fsdp", "--tp", "2", *TP_X_FSDP[variant], nproc=4, check=False,
                      timeout=600)  # fmt: skip
    assert result.returncode == 0, f"geex {' '.join(args)} failed:\n{result.stderr[-4000:]}"
    assert_trains_like(run, reference, "bf16")


def test_bf16_fsdp_checkpoint_resumes_on_one_process(single, tmp_path):
    """Two FSDP ranks train 2 steps in bf16 and save fp32 weights and AdamW state; one process
    finishes the run from that checkpoint as the single-process run does."""
    reference, config = single("bf16")
    run = tmp_path / "run"
    args = ["train", "--config", str(config), "--out", str(run), "--no-progress"]
    run_geex(*args, "--fsdp", "--checkpoint-every", "2", nproc=2)
    checkpoint = run / "checkpoints" / "step-00000002"
    saved = dcp.FileSystemReader(str(checkpoint)).read_metadata().state_dict_metadata
    kinds = {
        (name.split(".")[0], name.rsplit(".", 1)[-1], meta.properties.dtype)
        for name, meta in saved.items()
        if hasattr(meta, "properties")  # tensors, not the optimizer's settings
    }
    tensors = [("model", "weight"), ("model", "bias"), ("optim", "exp_avg"),
               ("optim", "exp_avg_sq"), ("optim", "step")]  # fmt: skip
    assert kinds == {(*kind, torch.float32) for kind in tensors}
    shutil.rmtree(run / "checkpoints" / "step-00000003")
    shutil.rmtree(run / "model")
    run_geex(*args)
    assert_trains_like(run, reference, "bf16")


def run_command(command: list[str]) -> subprocess.CompletedProcess:
    """Run a script (not `geex`) as the tests run geex: one thread, this checkout's sources."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), env.get("PYTHONPATH", "")])
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{result.stderr[-4000:]}"
    return result
