"""``precision: auto``: bf16 where the device multiplies bf16 natively, fp32 elsewhere; the
``tiny`` preset's (and so ``geex run``'s) default. `pytest tests/train/test_precision_auto.py`."""

from __future__ import annotations

import pytest
import torch
import yaml

from geex.pipeline.budget import Budget
from geex.pipeline.config import run_config
from geex.presets import TRAIN_PRESETS
from geex.train import precision
from geex.train.config import TrainConfig
from geex.train.memory_plan import preset_defaults
from geex.train.precision import resolve_precision
from geex.train.trainer import train
from tests.train.runs import SMALL_MODEL

CPU = torch.device("cpu")


@pytest.mark.parametrize(("amx", "avx512_bf16", "expected"), [
    (True, False, "bf16"), (False, True, "bf16"), (False, False, "fp32"),
])  # fmt: skip
def test_auto_is_bf16_only_on_cpus_with_native_bf16(monkeypatch, amx, avx512_bf16, expected):
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16,
                        raising=False)  # fmt: skip
    assert resolve_precision("auto", CPU) == expected
    for explicit in ("fp32", "bf16", "fp16"):
        assert resolve_precision(explicit, CPU) == explicit


def test_a_torch_without_the_cpu_checks_trains_in_fp32(monkeypatch):
    for check in ("_is_amx_tile_supported", "_is_avx512_bf16_supported"):
        monkeypatch.delattr(torch.cpu, check, raising=False)
    assert not precision.native_cpu_bf16()
    assert resolve_precision("auto", CPU) == "fp32"


def test_the_run_records_the_precision_auto_chose(byte_dataset, tmp_path, monkeypatch):
    monkeypatch.setattr(precision, "native_cpu_bf16", lambda: True)
    config = TrainConfig(data=str(byte_dataset), out=str(tmp_path), preset="tiny",
                         model=SMALL_MODEL, seq_len=64, global_batch_tokens=256,
                         micro_batch_size=4, max_steps=2, precision="auto")  # fmt: skip
    train(config, show_progress=False)
    assert yaml.safe_load((tmp_path / "config.yaml").read_text())["precision"] == "bf16"


def test_tiny_and_geex_run_train_in_auto_unless_told_otherwise():
    assert TrainConfig.from_dict({}).precision == "auto"
    assert TrainConfig.from_dict({"preset": "tiny"}).precision == "auto"
    assert TrainConfig.from_dict({"precision": "fp32"}).precision == "fp32"
    run = run_config({"out": "run", "data": {"sources": ["code"]}})
    assert run.train_config(Budget(seconds=600), 500).precision == "auto"
    assert TrainConfig.from_dict({"preset": "small"}).precision == "bf16"  # GPU presets: bf16


def test_memory_plans_count_auto_as_bf16(monkeypatch):
    monkeypatch.setitem(TRAIN_PRESETS, "tiny", {**TRAIN_PRESETS["tiny"], "precision": "auto"})
    assert preset_defaults("tiny")["precision"] == "bf16"
