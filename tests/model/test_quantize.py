"""Weight-only INT8 (`--quantize int8`): at most 55% of the fp16 weight memory, logits close to the
full-precision model's on real code, greedy decoding and the loaders' flag, checkpoints never
quantized, training refused. `pytest tests/model/test_quantize.py`."""

from __future__ import annotations

import copy
import email
import hashlib
import json
import re
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from geex.errors import GeexError
from geex.model import ModelConfig, build_model
from geex.model.checkpoint import load_model, load_weights, save_checkpoint
from geex.model.codegeex import num_params
from geex.model.generation import generate
from geex.model.loader import load_for_inference
from geex.model.loss import lm_loss
from geex.model.quantize import (
    Int8Embedding,
    Int8Linear,
    Int8RowsTensor,
    int8_linear,
    is_quantized,
    quantize_int8,
    quantize_rows,
    weight_bytes,
)
from geex.model.sampling import SamplingConfig
from geex.presets import model_preset
from geex.tokenizer import train_tokenizer
from tests.conftest import one_line_error, required_module, run_geex

# Real code that stays the same from one commit to the next (Geex's own source did not: each
# change to it trained another model): the standard library's email and json packages.
SOURCES = sorted(
    path for package in (email, json) for path in Path(package.__file__).parent.rglob("*.py")
)
# Error bounds on held-out real code, about 4x the relative error the fixture's model measures
# (Python 3.11: fp32 0.0013, top-1 agreement 100%; bf16 0.0032, 99.8%).
BOUNDS = {torch.float32: (0.005, 0.97), torch.bfloat16: (0.015, 0.93)}


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, torch.Tensor]:
    """A small model trained briefly on half of Geex's own source, saved as a checkpoint, and
    held-out token ids from the other half: trained weights, real text."""
    texts = [path.read_text() for path in SOURCES]
    seen, held_out = texts[::2], texts[1::2]
    tokenizer = train_tokenizer(seen, vocab_size=512, languages=["python"])
    ids = torch.tensor([i for text in seen for i in tokenizer.encode(text)])
    config = ModelConfig(
        n_layer=2, n_head=4, d_model=64, max_seq_len=128, vocab_size=tokenizer.vocab_size
    )
    model = build_model(config, seed=0).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(0)
    for _ in range(100):
        starts = torch.randint(0, len(ids) - 65, (8,), generator=generator)
        batch = torch.stack([ids[s : s + 65] for s in starts.tolist()])
        loss = lm_loss(model(batch[:, :-1]), batch[:, 1:])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    folder = tmp_path_factory.mktemp("trained") / "model"
    save_checkpoint(model.eval(), folder, tokenizer=tokenizer)
    held = [i for text in held_out for i in tokenizer.encode(text)][: 8 * 128]
    return folder, torch.tensor(held).view(8, 128)


@pytest.mark.parametrize("preset", ["tiny", "small"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_int8_weights_take_at_most_55_percent_of_fp16(preset, dtype):
    config = model_preset(preset)
    model = build_model(config, device="meta").to(dtype).eval()
    before = weight_bytes(model)
    report = quantize_int8(model)
    assert is_quantized(model)
    assert report.bytes_before == before == num_params(config) * dtype.itemsize
    assert report.bytes_after == weight_bytes(model)
    assert weight_bytes(model) <= 0.55 * num_params(config) * 2
    linear = next(k for k in report.kinds if k.kind.startswith("linear"))
    assert linear.tensors == 6 * config.n_attention_layers


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_logits_stay_close_on_real_code(trained, dtype):
    folder, held_out = trained
    full = load_model(folder, dtype=dtype)
    quantized = copy.deepcopy(full)
    quantize_int8(quantized)
    with torch.no_grad():
        expected, got = full(held_out).float(), quantized(held_out).float()
    relative_error = ((got - expected).norm() / expected.norm()).item()
    top1 = (got.argmax(-1) == expected.argmax(-1)).float().mean().item()
    max_error, min_top1 = BOUNDS[dtype]
    assert relative_error < max_error
    assert top1 >= min_top1
    loss = lm_loss(expected[:, :-1], held_out[:, 1:])
    assert abs(lm_loss(got[:, :-1], held_out[:, 1:]) - loss) < 0.01 * loss


def test_quantized_load_decodes_greedily(trained):
    folder, held_out = trained
    loaded = load_for_inference(folder, device="cpu", dtype="bf16", quantize="int8")
    assert loaded.quantize == "int8" and is_quantized(loaded.model)
    assert loaded.model.word_embeddings.weight.dtype == torch.bfloat16  # the KV cache's dtype
    sampling = SamplingConfig(max_new_tokens=24, temperature=0)
    prompts = [held_out[0, :40].tolist(), held_out[1, :20].tolist()]
    out = generate(loaded.model, prompts, sampling, vocab_size=loaded.tokenizer.vocab_size)
    assert [len(sample) for (sample,) in out] == [24, 24]
    assert all(0 <= i < loaded.tokenizer.vocab_size for (sample,) in out for i in sample)
    full = load_for_inference(folder, device="cpu", dtype="bf16")
    reference = generate(full.model, prompts, sampling, vocab_size=full.tokenizer.vocab_size)
    assert [s[0][0] for s in out] == [s[0][0] for s in reference]


def test_geex_generate_takes_quantize_int8(trained):
    folder, _ = trained
    result = run_geex(
        "generate", "--model", folder, "--quantize", "int8", "--prompt", "def ",
        "--max-new-tokens", "8", "--temperature", "0", "--device", "cpu", "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert '"tokens": ' in result.stdout


def test_geex_serve_takes_quantize_int8(trained):
    required_module("fastapi")
    from geex.serve.completion import complete

    folder, _ = trained
    command = [sys.executable, "-m", "geex", "serve", "--model", str(folder), "--port", "0",
               "--device", "cpu", "--quantize", "int8", "--log-level", "warning"]  # fmt: skip
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    try:
        line = process.stderr.readline()
        match = re.search(r"at (http://127\.0\.0\.1:\d+)/v1", line)
        assert match, line + process.stderr.read()
        body = {"prompt": "def add(", "max_tokens": 12, "temperature": 0}
        request = urllib.request.Request(
            match.group(1) + "/v1/completions", data=json.dumps(body).encode()
        )
        request.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(request, timeout=120) as response:
            answer = json.loads(response.read())
    finally:
        process.terminate()
        process.wait(timeout=30)
        process.stderr.close()
    loaded = load_for_inference(folder, device="cpu", quantize="int8")
    sampling = SamplingConfig(max_new_tokens=12, temperature=0)
    ((want,),) = complete(loaded.model, loaded.tokenizer, ["def add("], sampling=sampling,
                          add_tag=False)  # fmt: skip
    assert want.num_tokens > 0 and answer["choices"][0]["text"] == want.text


def test_an_unknown_quantization_is_refused(trained):
    folder, _ = trained
    with pytest.raises(GeexError, match="unknown quantization 'int4'; choose int8"):
        load_for_inference(folder, device="cpu", quantize="int4")


def test_checkpoints_hold_full_precision_weights_not_the_quantized_state(trained, tmp_path):
    folder, _ = trained
    digests = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir()}
    quantized = load_for_inference(folder, device="cpu", quantize="int8").model
    state = quantized.state_dict()
    assert state["layers.0.attention.query.weight_int8"].dtype == torch.int8
    assert "layers.0.attention.query.weight" not in state
    with pytest.raises(GeexError, match="int8-quantized model is not saved"):
        save_checkpoint(quantized, tmp_path / "copy")
    assert not (tmp_path / "copy").exists()
    with pytest.raises(GeexError, match="do not fit the model"):
        load_weights(build_model(quantized.config, device="meta"), state, source="int8")
    # Loading quantized read the checkpoint and wrote nothing: it still loads as it was.
    assert {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir()} == (
        digests
    )
    assert not is_quantized(load_model(folder))


def test_a_quantized_model_refuses_to_train(trained):
    folder, _ = trained
    model = load_model(folder)
    with pytest.raises(GeexError, match="cannot be trained"):
        quantize_int8(model.train())
    quantize_int8(model.eval())
    with pytest.raises(GeexError, match="cannot be trained"):
        model.train()
    with pytest.raises(GeexError, match="already quantized"):
        quantize_int8(model)


def test_quantizing_onto_a_device_moves_every_tensor_there():
    model = build_model(model_preset("tiny")).eval()
    quantize_int8(model, device="meta")  # a stand-in for a GPU: any device but the model's
    tensors = dict(model.named_parameters()) | dict(model.named_buffers())
    assert {name for name, t in tensors.items() if t.device.type != "meta"} == set()
    assert model.word_embeddings.weight.device.type == "meta"


def test_rows_round_to_nearest_against_the_stored_scale():
    weight = torch.tensor([[0.5, -1.27, 0.01], [0.0, 0.0, 0.0], [2.0, 1.01, -0.5]])
    q, scale = quantize_rows(weight)
    assert q.dtype == torch.int8 and scale.shape == (3,)
    assert q[0].tolist() == [50, -127, 1] and q[1].tolist() == [0, 0, 0]
    assert q[2].tolist() == [127, 64, -32]  # 64.1 and -31.75 to the nearest
    assert (q.float() * scale[:, None] - weight).abs().max() <= scale.max() / 2 + 1e-7


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_int8_linear_paths_agree_with_the_dequantized_matrix(dtype):
    generator = torch.Generator().manual_seed(0)
    linear = torch.nn.Linear(96, 40).to(dtype)
    swapped = Int8Linear.from_linear(linear)
    dequantized = swapped.weight_int8.float() * swapped.weight_scale.float()[:, None]
    x = torch.randn(3, 16, 96, generator=generator).to(dtype)
    expected = F.linear(x.float(), dequantized, linear.bias.float())
    batched = swapped(x)  # 48 rows: the cast path
    one_row = torch.cat([swapped(x[:, i : i + 1]) for i in range(16)], dim=1)  # int8-pack
    assert batched.dtype == one_row.dtype == dtype
    exact = 1e-6 if dtype == torch.float32 else 0.01
    assert ((batched.float() - expected).norm() / expected.norm()).item() < exact
    # One row (decoding) runs the kernel in bf16, fp32 activations included.
    assert ((one_row.float() - expected).norm() / expected.norm()).item() < 0.01


def test_fp16_scales_the_weight_before_the_matmul_so_large_activations_stay_finite():
    q = torch.full((4, 1024), 127, dtype=torch.int8)
    scale = torch.full((4,), 1e-3, dtype=torch.float16)
    x = torch.full((32, 1024), 100.0, dtype=torch.float16)  # x @ q alone would be 1.3e7
    y = int8_linear(x, q, scale)
    assert torch.isfinite(y).all()
    assert torch.allclose(y.float(), torch.full((32, 4), 100 * 127 * 1e-3 * 1024), rtol=0.01)


def test_the_tied_weight_reports_the_compute_dtype_and_serves_lookup_and_head():
    embedding = torch.nn.Embedding(50, 16)
    swapped = Int8Embedding.from_embedding(embedding)
    weight = swapped.weight
    assert isinstance(weight, Int8RowsTensor)
    assert weight.dtype == torch.float32 and weight.shape == (50, 16)
    dequantized = weight.dequantize()
    ids = torch.tensor([[3, 7, 49]])
    assert torch.equal(swapped(ids), dequantized[ids])
    assert torch.equal(F.embedding(ids, weight), dequantized[ids])
    x = torch.randn(16, 16)  # more rows than the int8-pack kernel takes: exact in fp32
    assert torch.allclose(F.linear(x, weight), x @ dequantized.T, atol=1e-5)
    assert torch.allclose(weight.sum(), dequantized.sum())  # anything else: dequantized


def test_eval_fingerprints_a_quantized_model_apart(trained):
    from geex.eval.backends_geex import GeexBackend
    from geex.eval.fingerprint import loaded_dtype

    folder, _ = trained
    assert loaded_dtype(GeexBackend.load(folder, device="cpu", quantize="int8")) == "float32+int8"
    assert loaded_dtype(GeexBackend.load(folder, device="cpu")) == "float32"


def test_geex_eval_refuses_quantize_without_a_geex_model():
    result = run_geex("eval", "embedded", "--hf-model", "gpt2", "--quantize", "int8")
    assert "--quantize int8 goes with --model" in one_line_error(result)


@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_compiled_decoding_of_a_quantized_model_gives_the_eager_tokens(trained, dtype):
    folder, held_out = trained
    model = load_for_inference(folder, device="cpu", dtype=dtype, quantize="int8").model
    prompts = [held_out[0, :30].tolist(), held_out[1, :12].tolist()]
    sampling = SamplingConfig(max_new_tokens=12, temperature=0)
    assert generate(model, prompts, sampling, compile_step=True) == generate(
        model, prompts, sampling
    )
