"""`geex train --lora R`: only the adapters train, the adapter saved apart loads in peft and
gives the trained model's logits, and the merged model gives them too.
`pytest tests/train/test_lora.py`."""

from __future__ import annotations

import copy
import json
import sys

import pytest
import torch

from geex.errors import ConfigError, GeexError
from geex.model.checkpoint import load_model, load_state_dict
from geex.train.config import TrainConfig
from geex.train.distributed import close_world, init_world
from geex.train.lora import lora_config, merge_lora
from geex.train.trainer import Trainer, train
from tests.conftest import required_module
from tests.train.instructions import instruction_rows, sft_config, write_jsonl

required_module("peft")

# Merging adds (alpha / r) B A to each weight in fp32: the logits move by rounding only.
MERGED_ATOL = 1e-5


def trained_lora_model(base, data, out, **fields):
    config = TrainConfig.from_dict(sft_config(base, data, out, max_steps=30, lora=4, **fields))
    world = init_world("cpu", 1)
    try:
        trainer = Trainer(config, world, show_progress=False)
        trainer.run()
    finally:
        close_world(world, finished=True)
    return trainer.raw_model


def test_lora_trains_the_adapters_only_and_merges_to_the_same_logits(chat_base_model, tmp_path):
    data = write_jsonl(tmp_path / "instructions.jsonl", instruction_rows())
    model = trained_lora_model(chat_base_model, data, tmp_path / "run")

    base = load_state_dict(chat_base_model)
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(".lora_A." in n or ".lora_B." in n for n in trainable)
    adapted = {n.split(".lora_")[0] for n in trainable}
    assert len(adapted) == 6 * 3  # six matmuls in each of 2 blocks and the top query layer
    for name, param in model.named_parameters():
        if name in trainable:
            continue
        assert torch.equal(param, base[name.replace(".base_layer.", ".")]), name  # bit-identical
    lora_b = [p for n, p in model.named_parameters() if ".lora_B." in n]
    assert all(p.abs().max() > 0 for p in lora_b)  # started at zero, trained

    inputs = torch.randint(0, 300, (2, 24), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        adapter_logits = model.eval()(inputs)
        assert not torch.allclose(adapter_logits, load_model(chat_base_model)(inputs), atol=1e-3)

        # Saved apart in peft's format: peft loads it onto the base model.
        from peft import PeftModel

        assert not (tmp_path / "run" / "model").exists()
        loaded = PeftModel.from_pretrained(
            load_model(chat_base_model), tmp_path / "run" / "adapter"
        )
        torch.testing.assert_close(loaded.eval()(inputs), adapter_logits, rtol=0, atol=1e-6)

        merged = copy.deepcopy(model)
        merge_lora(merged)
        assert not any(".lora_" in name for name in merged.state_dict())
        torch.testing.assert_close(merged(inputs), adapter_logits, rtol=0, atol=MERGED_ATOL)

    # --lora-merge: the same run writes the merged weights as a Geex checkpoint.
    train(TrainConfig.from_dict(sft_config(chat_base_model, data, tmp_path / "merged",
                                           max_steps=30, lora=4, lora_merge=True)),
          show_progress=False)  # fmt: skip
    with torch.no_grad():
        saved = load_model(tmp_path / "merged" / "model")(inputs)
    torch.testing.assert_close(saved, adapter_logits, rtol=0, atol=MERGED_ATOL)


def test_lora_settings_are_checked(chat_base_model, tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="need lora"):
        TrainConfig(data="d", out="o", lora_merge=True).check_fine_tuning()
    with pytest.raises(ConfigError, match="lora fine-tunes a model: name it with init_from"):
        TrainConfig(data="d", out="o", lora=8).check_fine_tuning()
    with pytest.raises(ConfigError, match="plain data parallel"):
        TrainConfig(data="d", out="o", init_from=str(chat_base_model), lora=8,
                    parallel={"fsdp": True}).check_fine_tuning()  # fmt: skip
    # A preset's tp/FSDP layout is for full training: LoRA from a 13B keeps one device.
    tuned = TrainConfig.from_dict({"preset": "codegeex-13b", "init_from": "m", "lora": 16})
    assert (tuned.parallel.tp, tuned.parallel.fsdp, tuned.precision) == (1, False, "fp16")
    tuned.check_fine_tuning()
    monkeypatch.setitem(sys.modules, "peft", None)  # as if it were not installed
    with pytest.raises(GeexError, match=r"pip install 'geex\[lora\]'"):
        lora_config(8, 16, 0.0)


def test_under_bf16_the_frozen_weights_are_kept_in_bf16_and_the_adapters_in_fp32(
    chat_base_model, tmp_path
):
    data = write_jsonl(tmp_path / "instructions.jsonl", instruction_rows())
    model = trained_lora_model(chat_base_model, data, tmp_path / "run", precision="bf16")
    dtypes = {name: p.dtype for name, p in model.named_parameters()}
    assert {d for n, d in dtypes.items() if ".lora_" in n} == {torch.float32}
    assert {d for n, d in dtypes.items() if ".lora_" not in n} == {torch.bfloat16}
    base = load_state_dict(chat_base_model)
    for name, param in model.named_parameters():
        if ".lora_" not in name:  # frozen: the base weights rounded to bf16, nothing more
            assert torch.equal(param, base[name.replace(".base_layer.", ".")].bfloat16()), name
    records = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    first, last = (json.loads(records[i])["loss"] for i in (0, -1))
    assert last < first - 1.5  # it trains (30 LoRA steps on a random model: 5.97 to 3.6)
