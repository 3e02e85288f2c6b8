"""Token-level decoding with a KV cache: greedy, temperature, top-k, top-p, n samples.

Text concerns (tokenizing, language tags, stop sequences, streaming) live in
:mod:`geex.serve.completion`; this module only turns prompt ids into continuation ids, fast:
the prompts are encoded once and their cache fanned out to the samples, and finished samples
leave the batch so the rest decode at a smaller batch size.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from geex.errors import ConfigError, GeexError
from geex.model.codegeex import CodeGeeX, KVCache


@dataclass
class SamplingConfig:
    max_new_tokens: int = 256
    temperature: float = 0.0  # 0: greedy
    top_p: float = 1.0  # nucleus sampling; 1: off
    top_k: int = 0  # 0: off
    num_samples: int = 1  # continuations per prompt
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ConfigError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise ConfigError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise ConfigError(f"top_k must be >= 0, got {self.top_k}")
        if self.num_samples < 1:
            raise ConfigError(f"num_samples must be >= 1, got {self.num_samples}")
        if self.num_samples > 1 and self.temperature == 0:
            raise ConfigError("num_samples > 1 needs temperature > 0: greedy samples are identical")


def sample_next(
    logits: torch.Tensor, sampling: SamplingConfig, generator: torch.Generator | None = None
) -> torch.Tensor:
    """One token id per row of ``logits`` ``(batch, vocab)``."""
    if sampling.temperature == 0:
        return logits.argmax(dim=-1)
    logits = logits.float() / sampling.temperature
    if sampling.top_k:
        kth_best = torch.topk(logits, min(sampling.top_k, logits.shape[-1])).values[:, -1:]
        logits = logits.masked_fill(logits < kth_best, float("-inf"))
    if sampling.top_p < 1:
        sorted_logits, order = torch.sort(logits, descending=True)
        probs = sorted_logits.softmax(dim=-1)
        # Drop a token when the tokens ranked above it already cover top_p; the best stays.
        outside = probs.cumsum(dim=-1) - probs >= sampling.top_p
        logits = logits.scatter(1, order, sorted_logits.masked_fill(outside, float("-inf")))
    probs = logits.softmax(dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(1)


StopRule = Callable[[int, list[int]], bool]
TokenSink = Callable[[list[int], list[int]], None]


@torch.inference_mode()
def generate(
    model: CodeGeeX,
    prompts: Sequence[Sequence[int]],
    sampling: SamplingConfig,
    *,
    vocab_size: int | None = None,
    eos_id: int | None = None,
    pad_id: int = 0,
    should_stop: StopRule | None = None,
    on_tokens: TokenSink | None = None,
) -> list[list[list[int]]]:
    """Continue every prompt ``sampling.num_samples`` times.

    Returns ``out[prompt][sample]``: the new token ids (``eos_id`` not included). A sample ends
    at ``eos_id``, after ``max_new_tokens``, or when ``should_stop(row, ids)`` says so, where
    ``row = prompt * num_samples + sample``. ``on_tokens(rows, ids)`` sees each step's new
    tokens, for streaming. Ids at or above ``vocab_size`` (the embedding's padding rows) are
    never sampled.
    """
    if not prompts or any(len(p) == 0 for p in prompts):
        raise GeexError("every prompt needs at least one token")
    config = model.config
    weight = model.word_embeddings.weight
    device = weight.device
    longest = max(len(p) for p in prompts)
    if longest >= config.max_seq_len:
        raise GeexError(
            f"a prompt of {longest} tokens leaves no room in the model's context of "
            f"{config.max_seq_len} tokens"
        )
    max_new = min(sampling.max_new_tokens, config.max_seq_len - longest)
    vocab_size = vocab_size or config.vocab_size
    generator = None
    if sampling.seed is not None:
        generator = torch.Generator(device=device).manual_seed(sampling.seed)

    # Prefill every distinct prompt once, left-padded to a common length.
    n_prompts, n = len(prompts), sampling.num_samples
    input_ids = torch.full((n_prompts, longest), pad_id, dtype=torch.long, device=device)
    key_valid = torch.zeros((n_prompts, longest), dtype=torch.bool, device=device)
    for i, prompt in enumerate(prompts):
        input_ids[i, longest - len(prompt) :] = torch.tensor(list(prompt), device=device)
        key_valid[i, longest - len(prompt) :] = True
    padded = not bool(key_valid.all())
    positions = (key_valid.cumsum(dim=1) - 1).clamp(min=0)
    cache = KVCache(config, n_prompts, longest + max_new, dtype=weight.dtype, device=device)
    logits = model(
        input_ids,
        positions,
        kv_cache=cache,
        attn_mask=_prefill_mask(key_valid) if padded else None,
    )[:, -1, :vocab_size]

    # Fan the prompts out to their samples.
    rows = torch.arange(n_prompts, device=device).repeat_interleave(n)
    cache.select(rows)
    logits, key_valid = logits[rows], key_valid[rows]
    next_position = positions[rows, -1] + 1
    active = list(range(n_prompts * n))  # which output row each batch row feeds
    outputs: list[list[int]] = [[] for _ in active]

    for step in range(max_new):
        tokens = sample_next(logits, sampling, generator)
        token_list = tokens.tolist()
        if on_tokens is not None:
            on_tokens(active, token_list)
        keep = []
        for i, (row, token) in enumerate(zip(active, token_list, strict=True)):
            if token == eos_id:
                continue
            outputs[row].append(token)
            if should_stop is None or not should_stop(row, outputs[row]):
                keep.append(i)
        if not keep or step == max_new - 1:
            break
        if len(keep) < len(active):
            index = torch.tensor(keep, device=device)
            cache.select(index)
            tokens, key_valid, next_position = tokens[index], key_valid[index], next_position[index]
            active = [active[i] for i in keep]
        key_valid = torch.cat([key_valid, key_valid.new_ones(len(active), 1)], dim=1)
        logits = model(
            tokens[:, None],
            next_position[:, None],
            kv_cache=cache,
            attn_mask=key_valid[:, None, None, :] if padded else None,
        )[:, -1, :vocab_size]
        next_position = next_position + 1

    return [outputs[p * n : (p + 1) * n] for p in range(n_prompts)]


def _prefill_mask(key_valid: torch.Tensor) -> torch.Tensor:
    """Causal attention over real tokens only; a padding query sees itself (no empty rows)."""
    seq = key_valid.shape[1]
    causal = torch.ones(seq, seq, dtype=torch.bool, device=key_valid.device).tril()
    itself = torch.eye(seq, dtype=torch.bool, device=key_valid.device)
    return (causal & key_valid[:, None, None, :]) | itself
