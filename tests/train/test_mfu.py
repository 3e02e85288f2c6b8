"""MFU divides by the peak of the arithmetic that ran: TF32 for fp32 on GPUs that have it
(switched on explicitly, and off with tf32: false), plain fp32 otherwise, bf16/fp16 under
autocast; the GPU found by name and capability (mocked: no GPU is needed).
`pytest tests/train/test_mfu.py`.
"""

from __future__ import annotations

import json

import pytest
import torch
import yaml

from geex.train.monitor import (
    ARITHMETICS,
    PEAK_FLOPS,
    Progress,
    gpu_peaks,
    matmul_arithmetic,
    peak_flops,
)
from geex.train.tf32 import fp32_matmuls, tf32_applies
from geex.train.trainer import train
from tests.train.test_trainer import config

CUDA = torch.device("cuda", 0)


@pytest.fixture
def gpu(monkeypatch):
    """Make torch report a GPU of the given name and compute capability."""

    def install(name: str, capability: tuple[int, int]):
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: name)
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)

    return install


@pytest.mark.parametrize(
    ("device_name", "table_name"),
    [
        ("NVIDIA H100 80GB HBM3", "H100"),
        ("NVIDIA H100 PCIe", "H100 PCIe"),
        ("NVIDIA H100 NVL", "H100 NVL"),
        ("NVIDIA H200", "H200"),
        ("NVIDIA GH200 480GB", "GH200"),
        ("NVIDIA A100-SXM4-80GB", "A100"),
        ("NVIDIA A10G", "A10G"),
        ("NVIDIA A10", "A10"),
        ("NVIDIA L40S", "L40S"),
        ("NVIDIA L4", "L4"),
        ("Tesla V100-SXM2-32GB", "V100"),
    ],
)
def test_a_gpu_is_found_by_the_longest_table_name_in_its_device_name(device_name, table_name):
    assert gpu_peaks(device_name) is PEAK_FLOPS[table_name]


def test_an_unknown_gpu_and_every_cpu_have_no_peak(gpu):
    gpu("Some Future Accelerator", (12, 0))
    assert peak_flops(CUDA, "bf16") is None
    assert peak_flops(torch.device("cpu"), "fp32") is None


def test_every_gpu_has_every_arithmetic_and_tensor_cores_beat_cuda_cores():
    for name, peaks in PEAK_FLOPS.items():
        assert set(peaks) == set(ARITHMETICS), name
        if peaks["tf32"] is not None:
            assert peaks["bf16"] == pytest.approx(2 * peaks["tf32"], rel=0.02), name
            assert peaks["tf32"] >= peaks["fp32"], name


@pytest.mark.parametrize(
    ("precision", "wanted", "arithmetic", "peak"),
    [
        ("fp32", True, "tf32", 494e12),
        ("fp32", False, "fp32", 67e12),  # H100 SXM's CUDA cores
        ("bf16", True, "bf16", 989e12),
        ("fp16", False, "fp16", 989e12),
    ],
)
def test_an_h100_run_divides_by_the_peak_of_what_ran(gpu, precision, wanted, arithmetic, peak):
    gpu("NVIDIA H100 80GB HBM3", (9, 0))
    tf32 = tf32_applies(precision, wanted, CUDA)
    assert tf32 == (arithmetic == "tf32")
    assert matmul_arithmetic(precision, tf32) == arithmetic
    assert peak_flops(CUDA, arithmetic) == peak


def test_a_gpu_before_ampere_has_no_tf32_so_fp32_runs_on_cuda_cores(gpu):
    gpu("Tesla V100-SXM2-32GB", (7, 0))
    assert not tf32_applies("fp32", True, CUDA)
    assert peak_flops(CUDA, matmul_arithmetic("fp32", False)) == 15.7e12
    assert peak_flops(CUDA, "bf16") is None  # no bf16 on a V100: MFU unknown, not wrong


def test_fp32_matmuls_switch_tf32_on_or_off_and_restore_the_process_settings(gpu):
    gpu("NVIDIA A100-SXM4-80GB", (8, 0))
    before = torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32
    with fp32_matmuls("fp32", True, CUDA):
        assert torch.get_float32_matmul_precision() == "high"
        assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
    with fp32_matmuls("fp32", False, CUDA):
        assert torch.get_float32_matmul_precision() == "highest"
        assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
    assert (torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32) == before


def test_bf16_and_cpu_runs_leave_the_switches_alone(gpu):
    gpu("NVIDIA A100-SXM4-80GB", (8, 0))
    before = torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32
    for precision, device in (("bf16", CUDA), ("fp32", torch.device("cpu"))):
        with fp32_matmuls(precision, True, device):
            assert (torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32) == before


def test_an_unresolved_precision_or_unknown_arithmetic_is_refused():
    with pytest.raises(ValueError, match="resolve it first"):
        matmul_arithmetic("auto", True)
    with pytest.raises(ValueError, match="arithmetic must be one of"):
        peak_flops(CUDA, "fp8")


def test_the_progress_line_names_the_peak_mfu_is_measured_against(capsys):
    progress = Progress(1, 0, enabled=True, arithmetic="tf32")
    assert not progress.live  # stderr is captured: the plain line a log file gets
    progress.update(0, {"loss": 1.5, "tokens_per_s": 1000.0, "mfu": 0.421})
    assert "MFU 42.1% of tf32 peak" in capsys.readouterr().err


@pytest.mark.parametrize("tf32", [True, False])
def test_the_run_records_what_its_matmuls_ran_in(byte_dataset, tmp_path, tf32):
    train(config(byte_dataset, tmp_path, max_steps=1, eval_every=0, tf32=tf32), show_progress=False)
    assert yaml.safe_load((tmp_path / "config.yaml").read_text())["tf32"] is tf32
    record = json.loads((tmp_path / "geex-train.json").read_text())
    # A CPU has no TF32 and no known peak, whatever was asked.
    assert record["matmuls"] == {"arithmetic": "fp32", "device": "cpu", "peak_flops": None}
