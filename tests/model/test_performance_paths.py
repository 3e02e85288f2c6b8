"""Fast paths compute what the plain ones do: fixed-shape and compiled decoding, compiled model. `pytest tests/model`."""

from __future__ import annotations

import pytest
import torch

from geex.model import KVCache, ModelConfig, build_model, generation
from geex.model.generation import generate
from geex.model.loss import lm_loss
from geex.model.sampling import SamplingConfig

CONFIG = ModelConfig(n_layer=2, n_head=4, d_model=64, max_seq_len=48, vocab_size=100)


@pytest.fixture(scope="module")
def model():
    return build_model(CONFIG, seed=0).eval()


@pytest.fixture
def uncompiled_fixed_shape_step(monkeypatch):
    """``compile_step=True`` without the compiler: the fixed-shape step itself, run eagerly."""
    monkeypatch.setattr(
        generation, "_compiled_fixed_shape_step", lambda: generation._fixed_shape_step
    )


def prompts_of(*lengths, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(0, 100, (n,), generator=g).tolist() for n in lengths]


@torch.inference_mode()
def test_fixed_shape_step_gives_the_eager_step_logits(model, uncompiled_fixed_shape_step):
    batch, prompt_len, max_len = 3, 7, 20
    eager_cache = KVCache(CONFIG, batch, max_len, dtype=torch.float32, device="cpu")
    model(torch.randint(0, 100, (batch, prompt_len)), kv_cache=eager_cache)
    fixed_cache = KVCache(CONFIG, batch, max_len, dtype=torch.float32, device="cpu")
    fixed_cache.layer_keys = [k.clone() for k in eager_cache.layer_keys]
    fixed_cache.layer_values = [v.clone() for v in eager_cache.layer_values]
    fixed_cache.advance(prompt_len)
    key_valid = torch.ones(batch, max_len, dtype=torch.bool)
    key_valid[0, :3] = False  # a left-padded row
    positions = torch.arange(batch) + prompt_len
    for _ in range(max_len - prompt_len):
        tokens = torch.randint(0, 100, (batch,))
        eager = generation._decode_step(model, tokens, positions, eager_cache, key_valid, True)
        fixed = generation._compiled_decode_step(
            model, tokens, positions, fixed_cache, key_valid, True
        )
        torch.testing.assert_close(fixed, eager, rtol=1e-5, atol=1e-5)
        positions = positions + 1
    assert fixed_cache.length == eager_cache.length == max_len


def test_fixed_shape_decoding_gives_the_eager_tokens(model, uncompiled_fixed_shape_step):
    prompts = prompts_of(3, 11, 1, 7)
    greedy = SamplingConfig(max_new_tokens=12)
    assert generate(model, prompts, greedy, compile_step=True) == generate(model, prompts, greedy)
    samples = SamplingConfig(max_new_tokens=10, temperature=1.5, num_samples=3, seed=7)
    assert generate(model, prompts[:2], samples, compile_step=True) == generate(
        model, prompts[:2], samples
    )


def test_a_stopped_row_leaves_the_fixed_shape_batch_cleanly(model, uncompiled_fixed_shape_step):
    prompts = prompts_of(5, 8, 2)
    sampling = SamplingConfig(max_new_tokens=14)
    full = generate(model, prompts, sampling)
    stopped = generate(
        model,
        prompts,
        sampling,
        should_stop=lambda row, ids: row == 1 and len(ids) == 3,
        compile_step=True,
    )
    assert stopped[1][0] == full[1][0][:3]
    assert stopped[0] == full[0] and stopped[2] == full[2]


def test_every_layer_caches_into_its_own_tensor():
    # A compiled step writes each layer's new position in place only if no two layers share
    # a tensor (a write into part of a shared input is copied whole).
    cache = KVCache(CONFIG, 2, 16, dtype=torch.float32, device="cpu")
    tensors = cache.layer_keys + cache.layer_values
    assert len({t.untyped_storage().data_ptr() for t in tensors}) == 2 * (CONFIG.n_layer + 1)
    assert cache.keys.shape == (CONFIG.n_layer + 1, 2, CONFIG.n_head, 16, CONFIG.head_dim)


@pytest.mark.slow
def test_compiled_decoding_gives_the_eager_tokens_and_compiles_once_per_shape():
    model = build_model(CONFIG, seed=1).eval()
    prompts = prompts_of(3, 11, 1, 7)
    sampling = SamplingConfig(max_new_tokens=12)
    assert generate(model, prompts, sampling, compile_step=True) == generate(
        model, prompts, sampling
    )
    # Same shapes, other tokens: every step, whatever its position, reuses the graph.
    others = prompts_of(3, 11, 1, 7, seed=1)
    with torch.compiler.set_stance("fail_on_recompile"):
        compiled = generate(model, others, sampling, compile_step=True)
    assert compiled == generate(model, others, sampling)


@pytest.mark.slow
def test_compiled_model_gives_the_eager_loss_and_gradients():
    eager = build_model(CONFIG, seed=2)
    compiled = build_model(CONFIG, seed=2)
    ids = torch.randint(0, 100, (2, 17))
    losses = []
    for forward in (eager, torch.compile(compiled, fullgraph=True)):
        loss = lm_loss(forward(ids[:, :-1]), ids[:, 1:])
        loss.backward()
        losses.append(loss.detach())
    torch.testing.assert_close(losses[1], losses[0])
    for (name, p), q in zip(eager.named_parameters(), compiled.parameters(), strict=True):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-4, atol=1e-6, msg=name)
