"""Data, tensor, FSDP and FSDP x TP parallel runs (gloo, CPU) equal the single-process run.

Each layout trains the same 3 steps on the same tokens; losses, gradient norms, the final
validation (loss and bits per byte per language) and the final weights must match the
single-process run to within fp32 reduction-order noise: 1e-5 relative for losses and norms,
2e-5 absolute for weights. `pytest tests/train/test_distributed.py`.
"""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from geex.train.monitor import final_validation, read_metrics
from tests.train.runs import grad_norms, losses, run_geex, write_config

LAYOUTS = {
    "ddp": (2, []),
    "tp": (2, ["--tp", "2"]),
    "fsdp+activation-checkpointing": (2, ["--fsdp", "--activation-checkpointing"]),
    "fsdp x tp (2 x 2)": (4, ["--fsdp", "--tp", "2"]),
}


def assert_same_run(run, reference):
    torch.testing.assert_close(losses(run), losses(reference), rtol=1e-5, atol=0)
    torch.testing.assert_close(grad_norms(run), grad_norms(reference), rtol=1e-5, atol=0)
    validation = final_validation(read_metrics(run / "metrics.jsonl"))
    expected = final_validation(read_metrics(reference / "metrics.jsonl"))
    assert set(expected["val_bpb"]) == {"c", "python", "all"}
    torch.testing.assert_close(validation, expected, rtol=1e-5, atol=0)
    mine = load_file(run / "model" / "model.safetensors")
    theirs = load_file(reference / "model" / "model.safetensors")
    assert mine.keys() == theirs.keys()
    for name in theirs:
        torch.testing.assert_close(mine[name], theirs[name], rtol=0, atol=2e-5, msg=name)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_parallel_run_equals_single_process(layout, single_run, tmp_path):
    reference, config = single_run
    nproc, flags = LAYOUTS[layout]
    run = tmp_path / "run"
    run_geex(
        "train", "--config", str(config), "--out", str(run), "--no-progress", *flags, nproc=nproc
    )
    assert_same_run(run, reference)


def test_ddp_with_muon_equals_single_process(bpe_dataset, tmp_path):
    """The tiny preset's Muon under DDP: each rank orthogonalises the same averaged gradient,
    so the ranks stay one model, the single process's. Losses and gradient norms match as
    for AdamW; the weights to 2e-4, not 2e-5: Muon's Newton-Schulz iterations run in bf16,
    which turns fp32 reduction-order noise in the gradient into bf16 roundings (1/256) of the
    iterations' input, and five iterations carry them into the update (measured: up to 1.1e-4
    after these 3 steps, against 2e-5 for AdamW)."""
    muon = {"warmup_steps": 1, "lr": 1e-3, "optimizer": "muon"}
    config = write_config(tmp_path / "config.yaml", bpe_dataset, eval_every=3, optim=muon)
    single, ddp = tmp_path / "single", tmp_path / "ddp"
    run_geex("train", "--config", str(config), "--out", str(single), "--no-progress")
    run_geex("train", "--config", str(config), "--out", str(ddp), "--no-progress", nproc=2)
    torch.testing.assert_close(losses(ddp), losses(single), rtol=1e-5, atol=0)
    torch.testing.assert_close(grad_norms(ddp), grad_norms(single), rtol=1e-5, atol=0)
    mine = load_file(ddp / "model" / "model.safetensors")
    theirs = load_file(single / "model" / "model.safetensors")
    for name in theirs:
        torch.testing.assert_close(mine[name], theirs[name], rtol=0, atol=2e-4, msg=name)


def test_checkpoint_reloads_at_another_world_size_and_tp_degree(single_run, tmp_path):
    """Train 2 steps on 2 x 2 (FSDP x TP), then finish on one process: same as never split."""
    reference, config = single_run
    run = tmp_path / "run"
    args = ["train", "--config", str(config), "--out", str(run), "--no-progress"]
    run_geex(*args, "--fsdp", "--tp", "2", "--checkpoint-every", "2", nproc=4)
    # Forget the last step, keep the step-2 checkpoint written by 4 ranks.
    import shutil

    shutil.rmtree(run / "checkpoints" / "step-00000003")
    shutil.rmtree(run / "model")
    run_geex(*args)
    assert_same_run(run, reference)


@pytest.mark.slow
def test_a_time_budget_stops_every_rank_at_the_same_step(byte_dataset, tmp_path):
    """Under a time budget each rank's clock differs; the ranks share the limit and the
    clock, so all leave the loop together and the final save does not hang."""
    config = write_config(tmp_path / "config.yaml", byte_dataset, max_steps=None, max_time=8.0)
    run = tmp_path / "run"
    run_geex("train", "--config", str(config), "--out", str(run), "--no-progress",
             nproc=2, timeout=240)  # fmt: skip
    assert len(losses(run)) >= 2
    assert (run / "model" / "model.safetensors").is_file()
