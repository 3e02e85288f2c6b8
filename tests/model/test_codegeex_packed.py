"""Packed CPU weights compute what the plain matmuls do, and are never used stale or in training. `pytest tests/model/test_codegeex_packed.py`."""

from __future__ import annotations

import pytest
import torch

from geex.model import KVCache, ModelConfig, build_model
from geex.model.loss import lm_loss
from geex.model.packed import PackedLinear, packing_available

CONFIG = ModelConfig(n_layer=2, n_head=4, d_model=64, max_seq_len=48, vocab_size=100)

pytestmark = pytest.mark.skipif(not packing_available(), reason="PyTorch built without oneDNN")


@pytest.fixture
def packed_calls(monkeypatch):
    """How many matmuls ran from packed copies."""
    calls = []
    call = PackedLinear.__call__
    monkeypatch.setattr(PackedLinear, "__call__", lambda self, x: calls.append(1) or call(self, x))
    return calls


def packed_and_plain(seed=0):
    packed = build_model(CONFIG, seed=seed).eval()
    assert packed.pack_for_cpu_decoding()
    return packed, build_model(CONFIG, seed=seed).eval()


def test_packed_decoding_gives_the_plain_logits(packed_calls):
    """The serving engine's call: per-row positions and boolean masks over a cache."""
    packed, plain = packed_and_plain()
    with torch.inference_mode():
        check_decoding(packed, plain)
    # Per forward: fused q/k/v, dense and two MLP matmuls a block (the top query layer: q and
    # fused k/v), and the output projection.
    assert len(packed_calls) == (1 + 5) * (4 * (CONFIG.n_layer + 1) + 2)


def check_decoding(packed, plain):
    batch, prompt_len, max_len = 3, 7, 12
    prompt = torch.randint(0, CONFIG.vocab_size, (batch, prompt_len))
    caches = [KVCache(CONFIG, batch, max_len, dtype=torch.float32, device="cpu") for _ in "ab"]
    torch.testing.assert_close(
        packed(prompt, kv_cache=caches[0]), plain(prompt, kv_cache=caches[1]), rtol=1e-5, atol=1e-5
    )
    # Row 1's first two cached positions are masked out, as for a shorter, left-padded prompt.
    valid = torch.ones(batch, max_len, dtype=torch.bool)
    valid[1, :2] = False
    for step in range(max_len - prompt_len):
        tokens = torch.randint(0, CONFIG.vocab_size, (batch, 1))
        positions = torch.tensor(
            [[prompt_len + step], [prompt_len - 2 + step], [prompt_len + step]]
        )
        mask = valid[:, None, None, : prompt_len + step + 1]
        logits = [
            model(tokens, positions, kv_cache=cache, attn_mask=mask)
            for model, cache in zip((packed, plain), caches, strict=True)
        ]
        torch.testing.assert_close(logits[0], logits[1], rtol=1e-5, atol=1e-5)


def test_changed_or_replaced_weights_are_used_not_their_stale_copies(packed_calls):
    packed, plain = packed_and_plain()
    ids = torch.randint(0, CONFIG.vocab_size, (2, 5))
    with torch.no_grad():
        for model in (packed, plain):  # in place, as an optimiser step does
            model.layers["1"].mlp.dense_h_to_4h.weight.mul_(1.5)
            model.word_embeddings.weight.add_(0.01)
        torch.testing.assert_close(packed(ids), plain(ids), rtol=1e-5, atol=1e-5)
        other = build_model(CONFIG, seed=1).eval()
        packed.load_state_dict(other.state_dict(), assign=True)
        torch.testing.assert_close(packed(ids), other(ids), rtol=1e-5, atol=1e-5)
    calls_per_forward = 4 * (CONFIG.n_layer + 1) + 2
    for _ in range(2):
        calls = len(packed_calls)
        packed.pack_for_cpu_decoding()  # repacks what changed
        with torch.no_grad():
            torch.testing.assert_close(packed(ids), other(ids), rtol=1e-5, atol=1e-5)
        assert len(packed_calls) - calls == calls_per_forward
        packed.to(torch.float64).to(torch.float32)  # new data under the same parameters
        calls = len(packed_calls)
        with torch.no_grad():
            torch.testing.assert_close(packed(ids), other(ids), rtol=1e-5, atol=1e-5)
        assert len(packed_calls) == calls


def test_training_never_uses_the_packed_copies(packed_calls):
    packed, plain = packed_and_plain()
    packed.train(), plain.train()
    ids = torch.randint(0, CONFIG.vocab_size, (2, 9))
    for model in (packed, plain):
        lm_loss(model(ids[:, :-1]), ids[:, 1:]).backward()
    assert not packed_calls
    for (name, p), q in zip(packed.named_parameters(), plain.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, msg=name)
    assert packed.state_dict().keys() == plain.state_dict().keys()


def test_only_fp32_cpu_weights_are_packed():
    assert not build_model(CONFIG, seed=0, dtype=torch.bfloat16).pack_for_cpu_decoding()
    assert not build_model(CONFIG, device="meta").pack_for_cpu_decoding()
    with torch.inference_mode():  # its tensors keep no version counter to detect changes by
        model = build_model(CONFIG, seed=0)
    assert not model.pack_for_cpu_decoding()
    assert model.packed_output is None and model.layers["0"].attention.packed_qkv is None
    model = build_model(CONFIG, seed=0)
    embeddings = model.word_embeddings
    weight = embeddings.weight.detach()
    del embeddings.weight
    embeddings.weight = weight  # computed, not a parameter: a quantized layer's, say
    assert not model.pack_for_cpu_decoding()


def test_weights_over_the_bound_are_not_packed():
    """A second copy of a large model's weights costs more memory than it saves time."""
    from geex.model import ModelConfig, build_model

    model = build_model(ModelConfig(n_layer=1, n_head=2, d_model=32, max_seq_len=32,
                                    vocab_size=128), seed=0).eval()  # fmt: skip
    assert not model.pack_for_cpu_decoding(max_bytes=1024)
    assert model.packed_output is None
