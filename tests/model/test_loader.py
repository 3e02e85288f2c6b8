"""load_for_inference loads a checkpoint with its tokenizer, on the device and dtype asked, and refuses bad folders and mismatched tokenizers clearly; `geex generate` goes through it. `pytest tests/model/test_loader.py`."""

from __future__ import annotations

import json
import re

import pytest
import torch

import geex
from geex.cli import main
from geex.errors import GeexError
from geex.model import ModelConfig, build_model
from geex.model.checkpoint import save_checkpoint
from geex.model.device import resolve_device
from geex.model.loader import load_for_inference
from geex.model.sampling import SamplingConfig
from geex.serve.completion import complete
from geex.tokenizer import train_tokenizer

TEXTS = ["def add(a, b):\n    return a + b\n", "int main() {\n    return 0;\n}\n"] * 20


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(TEXTS, vocab_size=300, languages=["python", "cpp"])


@pytest.fixture(scope="module")
def model(tokenizer):
    config = ModelConfig(
        n_layer=1, n_head=2, d_model=32, max_seq_len=64, vocab_size=tokenizer.vocab_size
    )
    return build_model(config, seed=0).eval()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, model, tokenizer):
    folder = tmp_path_factory.mktemp("loader") / "tiny-geex"
    save_checkpoint(model, folder, tokenizer=tokenizer)
    return folder


def test_loads_the_model_and_the_tokenizer_saved_with_it(checkpoint, model, tokenizer):
    loaded = load_for_inference(checkpoint, device="cpu")
    ids = torch.tensor([loaded.tokenizer.encode(TEXTS[0])])
    assert loaded.tokenizer.encode(TEXTS[0]) == tokenizer.encode(TEXTS[0])
    assert torch.equal(loaded.model(ids), model(ids))
    assert not loaded.model.training
    assert loaded.name == "tiny-geex"


def test_auto_dtype_on_a_cpu_is_fp32(checkpoint):
    loaded = load_for_inference(checkpoint, device="cpu", dtype="auto")
    assert loaded.device == torch.device("cpu") and loaded.dtype == torch.float32
    assert loaded.model.word_embeddings.weight.dtype == torch.float32


@pytest.mark.parametrize(("name", "dtype"), [("bf16", torch.bfloat16), ("fp16", torch.float16)])
def test_a_named_dtype_is_the_models_dtype(checkpoint, name, dtype):
    loaded = load_for_inference(checkpoint, device="cpu", dtype=name)
    assert loaded.dtype == dtype
    assert {p.dtype for p in loaded.model.parameters()} == {dtype}


def test_an_unknown_dtype_is_named(checkpoint):
    with pytest.raises(GeexError, match="unknown dtype 'fp8'"):
        load_for_inference(checkpoint, device="cpu", dtype="fp8")


def test_the_model_is_on_the_device_asked(checkpoint):
    loaded = load_for_inference(checkpoint, device="cpu")
    assert {p.device for p in loaded.model.parameters()} == {torch.device("cpu")}


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
def test_a_gpu_on_a_machine_without_one_is_a_clear_error(checkpoint):
    with pytest.raises(GeexError, match="no CUDA GPU"):
        load_for_inference(checkpoint, device="cuda:1")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_auto_picks_the_gpu_when_there_is_one(checkpoint):
    loaded = load_for_inference(checkpoint)
    assert loaded.device.type == "cuda"
    assert next(loaded.model.parameters()).device.type == "cuda"


def test_a_tokenizer_larger_than_the_embedding_is_refused(tmp_path, tokenizer):
    small = ModelConfig(n_layer=1, n_head=2, d_model=32, max_seq_len=64, vocab_size=100)
    save_checkpoint(build_model(small, seed=0), tmp_path, tokenizer=tokenizer)
    message = f"the tokenizer has {tokenizer.vocab_size:,} ids but the model embeds only 128"
    with pytest.raises(GeexError, match=message):
        load_for_inference(tmp_path, device="cpu")


def test_a_named_tokenizer_replaces_the_saved_one(tmp_path, checkpoint, tokenizer):
    other = train_tokenizer(TEXTS, vocab_size=280, languages=["python", "cpp"])
    assert other.vocab_size != tokenizer.vocab_size
    other.save(tmp_path / "other")
    loaded = load_for_inference(checkpoint, tokenizer=tmp_path / "other", device="cpu")
    assert loaded.tokenizer.vocab_size == other.vocab_size


def test_a_missing_folder_is_named(tmp_path):
    with pytest.raises(GeexError, match="nowhere: no such folder"):
        load_for_inference(tmp_path / "nowhere")


def test_a_file_is_not_a_checkpoint_folder(checkpoint):
    with pytest.raises(GeexError, match="is a file; expected a Geex checkpoint folder"):
        load_for_inference(checkpoint / "model.safetensors")


def test_a_folder_without_a_config_is_not_a_checkpoint(tmp_path):
    with pytest.raises(GeexError, match="not a Geex checkpoint: config.json is missing"):
        load_for_inference(tmp_path)


def test_a_checkpoint_without_a_tokenizer_asks_for_one(tmp_path, model):
    save_checkpoint(model, tmp_path)
    with pytest.raises(GeexError, match=r"no tokenizer saved with the model .*--tokenizer"):
        load_for_inference(tmp_path, device="cpu")


def test_the_public_entry_point_is_the_loader(checkpoint):
    loaded = geex.load_for_inference(checkpoint, device="cpu", dtype="bf16")
    assert loaded.dtype == torch.bfloat16 and loaded.name == "tiny-geex"


def test_geex_generate_refuses_a_mismatched_tokenizer_in_one_line(tmp_path, tokenizer, capsys):
    small = ModelConfig(n_layer=1, n_head=2, d_model=32, max_seq_len=64, vocab_size=100)
    save_checkpoint(build_model(small, seed=0), tmp_path / "small")
    tokenizer.save(tmp_path / "big-tokenizer")
    code = main(["generate", "--model", str(tmp_path / "small"), "--tokenizer",
                 str(tmp_path / "big-tokenizer"), "--prompt", "x", "--device", "cpu"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2
    assert err.strip().startswith("geex generate: error: the tokenizer has")
    assert "Traceback" not in err


def test_geex_generate_completes_with_the_saved_tokenizer(checkpoint, model, tokenizer, capsys):
    code = main(["generate", "--model", str(checkpoint), "--prompt", "def add(a, b):",
                 "--no-tag", "--max-new-tokens", "6", "--device", "cpu", "--json"])  # fmt: skip
    record = json.loads(capsys.readouterr().out)
    sampling = SamplingConfig(max_new_tokens=6)
    ((expected,),) = complete(model, tokenizer, "def add(a, b):", sampling=sampling, add_tag=False)
    assert code == 0
    assert record["completion"] == expected.text and record["tokens"] == expected.num_tokens


def test_the_dtype_flag_offers_exactly_the_dtypes_the_loader_knows():
    from geex.model.device import DTYPES
    from geex.model.load_options import DTYPE_NAMES

    assert set(DTYPE_NAMES) == {"auto", *DTYPES}


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("meta", "Geex runs on cpu, cuda or mps, not 'meta'"),
        ("mps", "this PyTorch has no Apple GPU (MPS)"),
        ("gpu", "unknown device 'gpu'"),
    ],
)
def test_a_device_this_machine_lacks_is_one_clear_error(name, says):
    if name == "mps" and torch.backends.mps.is_available():
        pytest.skip("this machine has an Apple GPU")
    with pytest.raises(GeexError, match=re.escape(says)):
        resolve_device(name)
