"""The CodeGeeX architecture: exact sizes, causality, KV cache, fp32 islands. `pytest tests/model`."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from geex.errors import ConfigError
from geex.model import KVCache, ModelConfig, build_model, flops_per_token, num_params
from geex.model.codegeex import fast_gelu
from geex.model.loss import lm_loss
from geex.presets import MODEL_PRESETS, model_preset

TINY = ModelConfig(n_layer=2, n_head=4, d_model=64, max_seq_len=64, vocab_size=100)


def tiny_model(seed=0, **changes):
    return build_model(TINY.replace(**changes), seed=seed).eval()


def test_codegeex_13b_has_exactly_the_published_parameter_count():
    config = MODEL_PRESETS["codegeex-13b"]
    model = build_model(config, device="meta")
    assert model.num_params() == 12_873_943_040
    assert num_params(config) == 12_873_943_040
    assert config.padded_vocab_size == 52_224 and config.n_attention_layers == 40
    assert all(p.is_meta for p in model.parameters())


def test_small_preset_is_about_125m_and_tiny_is_cpu_sized():
    assert 120e6 < num_params(MODEL_PRESETS["small"]) < 130e6
    assert num_params(MODEL_PRESETS["tiny"]) < 10e6


def test_flops_per_token_is_6n_plus_attention_term():
    config = MODEL_PRESETS["codegeex-13b"]
    n_matmul = 12_873_943_040 - 2 * 2048 * 5120  # position tables are lookups
    assert flops_per_token(config) == 6 * n_matmul + 12 * 40 * 5120 * 2048
    assert flops_per_token(config, seq_len=1024) == 6 * n_matmul + 12 * 40 * 5120 * 1024


def test_vocab_is_padded_to_a_multiple_of_128_by_default():
    assert ModelConfig(1, 1, 8, 8, vocab_size=50_400).padded_vocab_size == 50_432
    assert TINY.replace(vocab_size=300).padded_vocab_size == 384


def test_config_rejects_typos_and_bad_shapes_with_the_field_name():
    with pytest.raises(ConfigError, match="n_heads.*valid fields"):
        ModelConfig.from_dict({**TINY.to_dict(), "n_heads": 4})
    with pytest.raises(ConfigError, match="divisible"):
        TINY.replace(n_head=5)
    with pytest.raises(ConfigError, match="unknown model preset 'huge'.*tiny"):
        model_preset("huge")


def test_logits_cover_the_padded_vocabulary():
    model = tiny_model()
    logits = model(torch.randint(0, 100, (3, 7)))
    assert logits.shape == (3, 7, 128)


def test_output_head_is_tied_to_the_word_embeddings():
    model = tiny_model()
    assert not any("head" in name for name, _ in model.named_parameters())
    x = torch.randint(0, 100, (1, 5))
    before = model(x)
    with torch.no_grad():
        model.word_embeddings.weight[99] += 1.0  # a row never used as input here
    assert not torch.allclose(model(x)[..., 99], before[..., 99])


def test_future_tokens_do_not_change_past_logits():
    model = tiny_model()
    x = torch.randint(0, 100, (2, 20))
    y = x.clone()
    y[:, 12:] = torch.randint(0, 100, (2, 8))
    torch.testing.assert_close(model(x)[:, :12], model(y)[:, :12])
    assert not torch.allclose(model(x)[:, 12:], model(y)[:, 12:])


def test_top_query_layer_takes_its_queries_from_its_own_position_table():
    model = tiny_model()
    x = torch.randint(0, 100, (1, 10))
    before = model(x)
    with torch.no_grad():
        model.top_query_embeddings.weight[4].normal_(std=1.0)
    after = model(x)
    changed = (before - after).abs().amax(dim=-1)[0]
    assert changed[4] > 0  # only the query at position 4 moved
    assert torch.all(changed[torch.arange(10) != 4] == 0)


def test_layers_are_named_by_index_for_sharding_and_checkpoints():
    names = {name for name, _ in tiny_model().named_parameters()}
    assert "layers.0.attention.query.weight" in names
    assert "layers.1.mlp.dense_4h_to_h.bias" in names
    assert "top_query_layer.attention.key.bias" in names
    assert "final_layernorm.weight" in names


def test_last_only_gives_the_last_position_and_fills_the_same_cache():
    model = tiny_model()
    ids = torch.randint(0, 100, (2, 9))
    caches = [KVCache(model.config, 2, 16, dtype=torch.float32, device="cpu") for _ in range(2)]
    full = model(ids, kv_cache=caches[0])
    last = model(ids, kv_cache=caches[1], last_only=True)
    assert last.shape == (2, 1, full.shape[-1])
    torch.testing.assert_close(last, full[:, -1:], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(caches[1].keys, caches[0].keys)


@pytest.mark.parametrize("chunks", [[17, 13, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1], [1] * 12, [30]])
def test_cached_decoding_equals_full_recomputation(chunks):
    model = tiny_model()
    ids = torch.randint(0, 100, (2, sum(chunks)))
    full = model(ids)
    cache = KVCache(model.config, 2, 64, dtype=torch.float32, device="cpu")
    pieces, start = [], 0
    for size in chunks:
        pieces.append(model(ids[:, start : start + size], kv_cache=cache))
        start += size
    assert cache.length == sum(chunks)
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, rtol=1e-5, atol=1e-5)


def test_cache_holds_every_layer_including_the_top_query_layer():
    model = tiny_model()
    cache = KVCache(model.config, 1, 16, dtype=torch.float32, device="cpu")
    model(torch.randint(0, 100, (1, 5)), kv_cache=cache)
    assert cache.keys.shape[0] == TINY.n_layer + 1
    assert cache.keys[-1, :, :, :5].abs().sum() > 0  # the top query layer's keys were stored
    assert cache.keys[:, :, :, 5:].abs().sum() == 0


def test_fast_gelu_matches_codegeex_formula_and_stays_finite_in_fp16():
    x = torch.linspace(-20, 20, 1001, dtype=torch.float64)
    codegeex = x / (1 + torch.exp(-1.702 * x.abs())) * torch.exp(0.851 * (x - x.abs()))
    torch.testing.assert_close(fast_gelu(x), codegeex)
    extreme = torch.tensor([-65504.0, -100.0, -10.0, 0.0, 10.0, 65504.0], dtype=torch.float16)
    assert torch.isfinite(fast_gelu(extreme)).all()


def test_deterministic_initialisation_and_megatron_scaled_output_layers():
    a, b = tiny_model(seed=3), tiny_model(seed=3)
    for (name, p), (_, q) in zip(a.named_parameters(), b.named_parameters(), strict=True):
        assert torch.equal(p, q), name
    big = build_model(TINY.replace(d_model=256, d_ffn=1024, n_layer=8), seed=0)
    assert abs(big.layers["0"].attention.query.weight.std().item() - 0.02) < 1e-3
    assert abs(big.layers["0"].attention.dense.weight.std().item() - 0.02 / 4) < 3e-4
    assert torch.all(big.layers["0"].attention.query.bias == 0)


class _DtypeLog(TorchDispatchMode):
    """Records the dtype of the first tensor argument of chosen aten ops."""

    def __init__(self, ops):
        super().__init__()
        self.ops, self.seen = ops, {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if name in self.ops:
            self.seen.setdefault(name, set()).add(args[0].dtype)
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("mode", ["cast", "autocast"])
def test_layernorm_and_loss_run_in_fp32_whatever_the_compute_dtype(dtype, mode):
    model = tiny_model()
    ids = torch.randint(0, 100, (2, 9))
    log = _DtypeLog({"native_layer_norm", "_log_softmax", "nll_loss_forward", "mm", "addmm"})
    with log:
        if mode == "cast":
            logits = model.to(dtype)(ids)
        else:
            with torch.autocast("cpu", dtype=dtype):
                logits = model(ids)
        loss = lm_loss(logits, ids)
    assert log.seen["native_layer_norm"] == {torch.float32}
    assert log.seen["_log_softmax"] == {torch.float32}
    assert log.seen["nll_loss_forward"] == {torch.float32}
    assert log.seen.get("addmm", set()) | log.seen.get("mm", set()) == {dtype}  # matmuls stay low
    assert logits.dtype == dtype and loss.dtype == torch.float32


def test_layernorm_output_equals_fp32_normalisation_rounded_once():
    model = tiny_model().to(torch.bfloat16)
    ln = model.final_layernorm
    x = (torch.randn(4, 64) * 300 + 1000).to(torch.bfloat16)
    expected = F.layer_norm(x.float(), (64,), ln.weight.float(), ln.bias.float(), 1e-5)
    assert torch.equal(ln(x), expected.to(torch.bfloat16))


def test_attention_softmax_is_computed_in_fp32_under_bf16():
    torch.manual_seed(0)
    q, k, v = (torch.randn(1, 2, 64, 32).mul(4).bfloat16() for _ in range(3))
    mask = torch.ones(64, 64, dtype=torch.bool).tril()

    def attention(q, k, v):
        scores = (q @ k.transpose(-1, -2)) / 32**0.5
        return scores.masked_fill(~mask, float("-inf")).softmax(-1) @ v

    exact = attention(q.float(), k.float(), v.float())
    fused_error = (F.scaled_dot_product_attention(q, k, v, is_causal=True).float() - exact).abs()
    bf16_error = (attention(q, k, v).float() - exact).abs()
    # Left: rounding of the probabilities and the output to bf16. A bf16 softmax errs >10x more.
    assert fused_error.max() < bf16_error.max() / 4
    assert fused_error.mean() < bf16_error.mean() / 4
