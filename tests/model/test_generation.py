"""Decoding with the KV cache: greedy equals a naive loop, batching and sampling behave. `pytest tests/model`."""

from __future__ import annotations

import pytest
import torch

from geex.errors import ConfigError, GeexError
from geex.model import ModelConfig, build_model
from geex.model.generation import generate, penalize_repeats, sample_next
from geex.model.sampling import SamplingConfig

CONFIG = ModelConfig(n_layer=2, n_head=4, d_model=64, max_seq_len=48, vocab_size=100)


@pytest.fixture(scope="module")
def model():
    return build_model(CONFIG, seed=0).eval()


def naive_greedy(model, prompt, steps):
    """Recompute the whole sequence for every new token: slow, obviously right."""
    ids = list(prompt)
    with torch.no_grad():
        for _ in range(steps):
            logits = model(torch.tensor([ids]))[0, -1, : CONFIG.vocab_size]
            ids.append(int(logits.argmax()))
    return ids[len(prompt) :]


def prompts_of(*lengths, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(0, 100, (n,), generator=g).tolist() for n in lengths]


def test_greedy_with_cache_equals_naive_recomputation(model):
    (prompt,) = prompts_of(9)
    out = generate(model, [prompt], SamplingConfig(max_new_tokens=25))
    assert out[0][0] == naive_greedy(model, prompt, 25)


def test_left_padded_batch_equals_prompts_one_by_one(model):
    prompts = prompts_of(3, 11, 1, 7)
    batched = generate(model, prompts, SamplingConfig(max_new_tokens=12))
    for prompt, out in zip(prompts, batched, strict=True):
        assert out[0] == naive_greedy(model, prompt, 12)


def test_samples_are_reproducible_with_a_seed_and_differ_between_rows(model):
    sampling = SamplingConfig(max_new_tokens=16, temperature=1.5, num_samples=4, seed=7)
    a = generate(model, prompts_of(5), sampling)
    b = generate(model, prompts_of(5), sampling)
    assert a == b
    assert len(a[0]) == 4 and len({tuple(s) for s in a[0]}) > 1


def test_top_k_1_and_tiny_top_p_are_greedy(model):
    prompts = prompts_of(6)
    greedy = generate(model, prompts, SamplingConfig(max_new_tokens=10))
    for sampling in (
        SamplingConfig(max_new_tokens=10, temperature=2.0, top_k=1, seed=0),
        SamplingConfig(max_new_tokens=10, temperature=2.0, top_p=1e-6, seed=0),
    ):
        assert generate(model, prompts, sampling) == greedy


def test_top_k_and_top_p_only_sample_from_the_allowed_set():
    logits = torch.tensor([[4.0, 3.0, 2.0, 1.0, 0.0]]).repeat(2000, 1)
    g = torch.Generator().manual_seed(0)
    top_k = sample_next(logits, SamplingConfig(temperature=1.0, top_k=2), g)
    assert set(top_k.tolist()) == {0, 1}
    # softmax([4, 3, 2, ...]) = [0.64, 0.24, 0.09, ...]: top_p 0.8 keeps exactly the first two.
    top_p = sample_next(logits, SamplingConfig(temperature=1.0, top_p=0.8), g)
    assert set(top_p.tolist()) == {0, 1}


def test_eos_ends_a_sample_and_is_not_returned(model):
    (prompt,) = prompts_of(4)
    reference = naive_greedy(model, prompt, 10)
    eos = reference[3]
    out = generate(model, [prompt], SamplingConfig(max_new_tokens=10), eos_id=eos)
    assert out[0][0] == reference[: reference.index(eos)]


def test_a_stopped_row_leaves_the_batch_without_changing_the_others(model):
    prompts = prompts_of(5, 8, 2)
    sampling = SamplingConfig(max_new_tokens=14)
    full = generate(model, prompts, sampling)
    stopped = generate(
        model, prompts, sampling, should_stop=lambda row, ids: row == 1 and len(ids) == 3
    )
    assert stopped[1][0] == full[1][0][:3]
    assert stopped[0] == full[0] and stopped[2] == full[2]


def test_padding_rows_of_the_vocabulary_are_never_sampled():
    model = build_model(CONFIG, seed=0).eval()
    (prompt,) = prompts_of(3)
    logits = model(torch.tensor([prompt]))[0, -1]
    with torch.no_grad():  # make padding id 120 the overwhelming favourite of the full logits
        best = int(logits.argmax())
        model.word_embeddings.weight[120] = (
            model.word_embeddings.weight[best] * 100 * logits[best].sign()
        )
    assert int(model(torch.tensor([prompt]))[0, -1].argmax()) == 120
    for sampling in (
        SamplingConfig(max_new_tokens=8),
        SamplingConfig(max_new_tokens=8, temperature=1.0),
    ):
        out = generate(model, [prompt], sampling)
        assert all(t < CONFIG.vocab_size for t in out[0][0])


def test_streaming_sees_every_token_in_order(model):
    seen: dict[int, list[int]] = {}

    def sink(rows, tokens):
        for row, token in zip(rows, tokens, strict=True):
            seen.setdefault(row, []).append(token)

    sampling = SamplingConfig(max_new_tokens=6, temperature=1.0, num_samples=2, seed=1)
    out = generate(model, prompts_of(4, 2), sampling, on_tokens=sink)
    assert [seen[r] for r in range(4)] == [out[p][s] for p in range(2) for s in range(2)]


def test_context_overflow_and_bad_settings_are_clear_errors(model):
    with pytest.raises(GeexError, match="no room"):
        generate(model, [[1] * 48], SamplingConfig())
    out = generate(model, [[1] * 40], SamplingConfig(max_new_tokens=100))
    assert len(out[0][0]) == 8  # clipped to the context
    with pytest.raises(ConfigError, match="temperature > 0"):
        SamplingConfig(num_samples=3)
    with pytest.raises(ConfigError, match="top_p"):
        SamplingConfig(top_p=0)


def test_a_temperature_below_the_greedy_threshold_takes_the_argmax():
    logits = torch.randn(3, 50, generator=torch.Generator().manual_seed(0)) * 30
    for temperature in (1e-39, 5e-324, 9e-6):  # 1e-39 overflowed the logits to inf/NaN
        tokens = sample_next(logits, SamplingConfig(temperature=temperature))
        assert torch.equal(tokens, logits.argmax(dim=-1))


def test_allowed_tokens_constrain_a_row_until_they_return_none(model):
    """Token healing's hook: a row's next token comes from its allowed ids, and decoding goes
    on from the forced tokens exactly as from a prompt that held them."""
    prompts = prompts_of(5, 8)

    def allowed(row, ids):
        forced = ([17, 5], [3])[row]
        return [forced[len(ids)]] if len(ids) < len(forced) else None

    out = generate(model, prompts, SamplingConfig(max_new_tokens=6), allowed_tokens=allowed)
    assert out[0][0][:2] == [17, 5] and out[1][0][:1] == [3]
    assert out[0][0][2:] == naive_greedy(model, prompts[0] + [17, 5], 4)
    assert out[1][0][1:] == naive_greedy(model, prompts[1] + [3], 5)


def naive_penalized_greedy(model, prompt, steps, penalty, window):
    """Greedy with the repetition rule spelled out token by token: a score of a token among
    the last ``window`` ids (prompt included) is divided by ``penalty`` if positive, else
    multiplied."""
    ids = list(prompt)
    with torch.no_grad():
        for _ in range(steps):
            logits = model(torch.tensor([ids]))[0, -1, : CONFIG.vocab_size].clone()
            for token in set(ids[-window:]):
                score = logits[token]
                logits[token] = score / penalty if score > 0 else score * penalty
            ids.append(int(logits.argmax()))
    return ids[len(prompt) :]


def test_repetition_penalty_equals_the_rule_applied_token_by_token(model):
    prompts = prompts_of(3, 11, 1, 7)  # left-padded: padding is never penalised
    sampling = SamplingConfig(max_new_tokens=20, repetition_penalty=3.0, repetition_window=6)
    batched = generate(model, prompts, sampling)
    for prompt, out in zip(prompts, batched, strict=True):
        assert out[0] == naive_penalized_greedy(model, prompt, 20, 3.0, 6)
    assert batched != generate(model, prompts, SamplingConfig(max_new_tokens=20))


def test_repetition_penalty_follows_rows_when_a_row_leaves_the_batch(model):
    prompts = prompts_of(4, 9)
    sampling = SamplingConfig(max_new_tokens=15, repetition_penalty=2.0, repetition_window=64)
    out = generate(
        model, prompts, sampling, should_stop=lambda row, ids: row == 0 and len(ids) == 3
    )
    assert out[0][0] == naive_penalized_greedy(model, prompts[0], 3, 2.0, 64)
    assert out[1][0] == naive_penalized_greedy(model, prompts[1], 15, 2.0, 64)


def test_a_penalty_above_one_breaks_a_greedy_loop():
    """A model whose every state prefers token 7 loops on it under greedy decoding; with the
    penalty, token 7 is taken once and then avoided while it stays in the window."""
    logits = torch.full((1, 10), -1.0)
    logits[0, 7], logits[0, 3] = 2.0, 1.5
    recent = torch.tensor([[-1, -1, 7]])
    penalized = penalize_repeats(logits, recent, 1.5)
    assert int(penalized.argmax()) == 3
    assert penalized[0, 7] == pytest.approx(2.0 / 1.5)
    negative = penalize_repeats(-logits, torch.tensor([[3, 3, -1]]), 2.0)
    assert negative[0, 3] == pytest.approx(-3.0) and negative[0, 7] == pytest.approx(-2.0)
    assert torch.equal(penalize_repeats(logits, recent, 1.0), logits)


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"repetition_penalty": 0}, "repetition_penalty must be from 0.01 to 100"),
        ({"repetition_penalty": float("nan")}, "repetition_penalty must be from 0.01 to 100"),
        # A float32 of these is 0 or inf: the sampler's probabilities would be NaN.
        ({"repetition_penalty": 1e-300}, "repetition_penalty must be from 0.01 to 100"),
        ({"temperature": 3.5e38}, "temperature must be from 0 .greedy. to 100"),
        ({"repetition_window": 0}, "repetition_window must be an integer >= 1"),
    ],
)
def test_bad_repetition_settings_are_refused(fields, message):
    with pytest.raises(ConfigError, match=message):
        SamplingConfig(**fields)
