"""The Geex checkpoint format round-trips exactly and refuses bad folders clearly. `pytest tests/model`."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

import geex
from geex.errors import GeexError
from geex.model import ModelConfig, build_model
from geex.model.checkpoint import converted_checkpoint, save_checkpoint

CONFIG = ModelConfig(n_layer=2, n_head=4, d_model=64, max_seq_len=32, vocab_size=100)


@pytest.fixture
def model():
    return build_model(CONFIG, seed=0).eval()


def test_round_trip_gives_identical_logits_and_config(model, tmp_path):
    save_checkpoint(model, tmp_path)
    loaded = geex.load_model(tmp_path)
    ids = torch.randint(0, 100, (2, 11))
    assert torch.equal(loaded(ids), model(ids))
    assert loaded.config == CONFIG and not loaded.training
    header = json.loads((tmp_path / "config.json").read_text())
    assert header["format"] == "geex" and header["dtype"] == "float32"


def test_wrapper_prefixes_are_stripped(model, tmp_path):
    save_checkpoint(torch.compile(model), tmp_path)
    names = load_file(tmp_path / "model.safetensors").keys()
    assert "layers.0.attention.query.weight" in names
    assert not any("_orig_mod" in n for n in names)


def test_sharded_save_loads_back_and_replaces_a_single_file(model, tmp_path):
    save_checkpoint(model, tmp_path)
    save_checkpoint(model, tmp_path, max_shard_bytes=100_000)
    shards = sorted(p.name for p in tmp_path.glob("model-*.safetensors"))
    assert len(shards) > 1 and not (tmp_path / "model.safetensors").exists()
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    assert set(index["weight_map"].values()) == set(shards)
    ids = torch.randint(0, 100, (1, 7))
    assert torch.equal(geex.load_model(tmp_path)(ids), model(ids))
    save_checkpoint(model, tmp_path)  # back to one file: stale shards and index go
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.safetensors"]


def test_save_in_half_precision_and_load_in_another_dtype(model, tmp_path):
    save_checkpoint(model, tmp_path, dtype=torch.bfloat16)
    assert json.loads((tmp_path / "config.json").read_text())["dtype"] == "bfloat16"
    loaded = geex.load_model(tmp_path, dtype=torch.float32)
    assert loaded.word_embeddings.weight.dtype == torch.float32
    torch.testing.assert_close(
        loaded.word_embeddings.weight, model.word_embeddings.weight.bfloat16().float()
    )


def test_missing_folder_and_foreign_config_are_clear_errors(tmp_path):
    with pytest.raises(GeexError, match="config.json is missing"):
        geex.load_model(tmp_path)
    (tmp_path / "config.json").write_text('{"model_type": "gpt2"}')
    with pytest.raises(GeexError, match="Hugging Face export"):
        geex.load_model(tmp_path)


def test_weights_of_another_shape_are_named(model, tmp_path):
    save_checkpoint(model, tmp_path)
    header = json.loads((tmp_path / "config.json").read_text())
    header["model"]["d_ffn"] = 128
    (tmp_path / "config.json").write_text(json.dumps(header))
    with pytest.raises(GeexError, match=r"wrong shapes layers\.0\.mlp\.dense_h_to_4h"):
        geex.load_model(tmp_path)


def test_a_failed_save_leaves_the_previous_checkpoint_intact(model, tmp_path, monkeypatch):
    save_checkpoint(model, tmp_path)
    before = (tmp_path / "model.safetensors").read_bytes()

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("geex.model.checkpoint.save_file", crash)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(build_model(CONFIG, seed=1), tmp_path)
    assert (tmp_path / "model.safetensors").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.safetensors"]


def test_a_converted_checkpoint_is_written_whole_or_not_at_all(model, tmp_path):
    source = tmp_path / "source"
    source.mkdir()

    def convert(tensors, out, **metadata):
        return converted_checkpoint(
            tensors, out, config=CONFIG, inputs=[source], source="test", metadata=metadata
        )

    tensors = {name: t.clone() for name, t in model.state_dict().items()}
    out = tmp_path / "out"
    failing = pytest.raises(RuntimeError, match="copying the tokenizer failed")
    with failing, convert(tensors, out) as tmp:
        assert (tmp / "config.json").is_file()  # the checkpoint is in before the block
        raise RuntimeError("copying the tokenizer failed")
    assert not out.exists() and list(tmp_path.iterdir()) == [source]

    with convert(tensors, out, converted_from="x"):
        pass
    ids = torch.randint(0, 100, (2, 11))
    assert torch.equal(geex.load_model(out)(ids), model(ids))
    assert json.loads((out / "config.json").read_text())["converted_from"] == "x"

    tensors["layers.0.attention.query.weight"] = torch.zeros(3, 3)
    misfit = pytest.raises(GeexError, match="weights in test do not fit the model")
    with misfit, convert(tensors, tmp_path / "other"):
        pass
    assert not (tmp_path / "other").exists()
