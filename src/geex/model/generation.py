"""Token-level decoding with a KV cache: greedy, temperature, top-k, top-p, n samples.

Text concerns (tokenizing, language tags, stop sequences, streaming) live in
:mod:`geex.serve.completion`; this module only turns prompt ids into continuation ids, fast:
the prompts are encoded once and their cache fanned out to the samples, and finished samples
leave the batch so the rest decode at a smaller batch size.

Each new token costs one forward pass of a single position, a few hundred small operations:
on a CPU their Python and dispatch overhead is a large part of the step, and the rest is
matmuls of a few rows by every weight, which MKL runs far below a core's peak. So on a CPU in
fp32 the model first packs its weights for oneDNN (:meth:`CodeGeeX.pack_for_cpu_decoding`,
once per model, a second copy of the weights). ``compile_step=True`` runs the steps through
``torch.compile`` instead, with shapes that stay the same from step to step (see
:func:`_fixed_shape_step`), so the graph compiles once per model and shape family.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import torch

from geex.errors import GeexError
from geex.model.codegeex import CodeGeeX, KVCache
from geex.model.sampling import GREEDY_BELOW, SamplingConfig


def sample_next(
    logits: torch.Tensor, sampling: SamplingConfig, generator: torch.Generator | None = None
) -> torch.Tensor:
    """One token id per row of ``logits`` ``(batch, vocab)``; greedy below ``GREEDY_BELOW``."""
    if sampling.temperature < GREEDY_BELOW:
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


def penalize_repeats(logits: torch.Tensor, recent: torch.Tensor, penalty: float) -> torch.Tensor:
    """``logits`` ``(batch, vocab)`` with every token of its row of ``recent`` ``(batch,
    window)`` made less likely: a positive score divided by ``penalty``, a negative one
    multiplied (the rule of Keskar et al., 2019, as transformers, vLLM and llama.cpp apply it).
    Slots of ``recent`` below 0 are empty.

    Why a code model needs it: a young model's likeliest continuation is often the line it
    just wrote, and greedy decoding then loops (``0.0.0.0``, ``# if x:`` again and again)."""
    vocab = logits.shape[1]
    ids = torch.where((recent >= 0) & (recent < vocab), recent, vocab)  # empty: a spare column
    seen = torch.zeros(logits.shape[0], vocab + 1, dtype=torch.bool, device=logits.device)
    seen = seen.scatter(1, ids, True)[:, :vocab]
    scaled = torch.where(logits > 0, logits / penalty, logits * penalty)
    return torch.where(seen, scaled, logits)


StopRule = Callable[[int, list[int]], bool]
TokenSink = Callable[[list[int], list[int]], None]
AllowedTokens = Callable[[int, list[int]], "Sequence[int] | None"]


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
    compile_step: bool = False,
    allowed_tokens: AllowedTokens | None = None,
) -> list[list[list[int]]]:
    """Continue every prompt ``sampling.num_samples`` times.

    Returns ``out[prompt][sample]``: the new token ids (``eos_id`` not included). A sample ends
    at ``eos_id``, after ``max_new_tokens``, or when ``should_stop(row, ids)`` says so, where
    ``row = prompt * num_samples + sample``. ``on_tokens(rows, ids)`` sees each step's new
    tokens, for streaming. Ids at or above ``vocab_size`` (the embedding's padding rows) are
    never sampled. ``compile_step`` decodes through a compiled step: the same tokens (up to
    fp32 rounding), faster once compiled; the first call with a new model pays the compile.
    ``allowed_tokens(row, ids)``, where it returns ids rather than None, lists those the row's
    next token may take after its ``ids`` so far (token healing,
    :mod:`geex.tokenizer.healing`; the ``prefix_allowed_tokens_fn`` of transformers).
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
    if not compile_step:
        model.pack_for_cpu_decoding()  # a no-op off the CPU, outside fp32, or once packed
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
    logits = logits[rows]
    # Which cache slots hold real tokens: the prompt's non-padding, then every generated one.
    key_valid = torch.cat([key_valid, key_valid.new_ones(n_prompts, max_new)], dim=1)[rows]
    next_position = positions[rows, -1] + 1
    active = list(range(n_prompts * n))  # which output row each batch row feeds
    outputs: list[list[int]] = [[] for _ in active]
    decode_step = _compiled_decode_step if compile_step else _decode_step
    penalty = sampling.penalty
    if penalty != 1:
        window = min(sampling.repetition_window, longest + max_new)  # none looks further
        recent = torch.where(key_valid[:, :longest], input_ids[rows], -1)[:, -window:]
        recent = torch.nn.functional.pad(recent, (window - recent.shape[1], 0), value=-1)

    for step in range(max_new):
        if penalty != 1:
            logits = penalize_repeats(logits, recent, penalty)
        if allowed_tokens is not None:
            logits = only_allowed(logits, [allowed_tokens(row, outputs[row]) for row in active])
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
            if penalty != 1:
                recent = recent[index]
        if penalty != 1:
            recent = torch.cat([recent[:, 1:], tokens[:, None]], dim=1)
        logits = decode_step(model, tokens, next_position, cache, key_valid, padded)
        logits = logits[:, :vocab_size]
        next_position = next_position + 1

    return [outputs[p * n : (p + 1) * n] for p in range(n_prompts)]


def only_allowed(logits: torch.Tensor, allowed: Sequence[Sequence[int] | None]) -> torch.Tensor:
    """``logits`` with every id outside a row's ``allowed`` at -inf (None: every id)."""
    if all(ids is None for ids in allowed):
        return logits
    keep = torch.ones_like(logits, dtype=torch.bool)
    for row, ids in enumerate(allowed):
        if ids is not None:
            keep[row] = False
            keep[row, [i for i in ids if i < logits.shape[1]]] = True
    return logits.masked_fill(~keep, float("-inf"))


def _decode_step(model, tokens, positions, cache, key_valid, padded):
    """Logits ``(batch, vocab)`` for one new token per row, attending to the cache's filled part.

    ``key_valid`` ``(batch, max_len)`` marks the slots that hold real tokens; it is needed only
    when a prompt was ``padded``.
    """
    mask = key_valid[:, None, None, : cache.length + 1] if padded else None
    return model(tokens[:, None], positions[:, None], kv_cache=cache, attn_mask=mask)[:, -1]


def _compiled_decode_step(model, tokens, positions, cache, key_valid, padded):
    """:func:`_decode_step` through the compiled :func:`_fixed_shape_step` (always masked)."""
    slot = torch.tensor([cache.length], device=tokens.device)
    logits = _compiled_fixed_shape_step()(
        model,
        tokens[:, None],
        positions[:, None],
        cache.layer_keys,
        cache.layer_values,
        slot,
        key_valid,
    )
    cache.advance(1)
    return logits


def _fixed_shape_step(model, tokens, positions, keys, values, slot, key_valid):
    """:func:`_decode_step` with the same shapes at every step, for ``torch.compile``.

    The new keys and values go to ``slot``, a tensor (a Python int would be baked into the
    graph: one compile per step), and attention reads every slot of the preallocated cache
    under a mask of those written so far, so one graph serves every step. The masked slots
    weigh exactly zero, so the logits equal the eager step's up to summation order.
    """
    written = torch.arange(key_valid.shape[1], device=key_valid.device) <= slot
    mask = (key_valid & written)[:, None, None, :]
    cache = _SlotCache(keys, values, slot)
    return model(tokens, positions, kv_cache=cache, attn_mask=mask)[:, -1]


@functools.cache
def _compiled_fixed_shape_step():
    # One compiled function for the process: dynamo keys its graphs by code and guards, and a
    # second torch.compile wrapper would not share them. Built on first use, so importing this
    # module does not import the compiler. cpp_wrapper calls the step's ~50 kernels from C++
    # rather than Python: a step of a small model takes a few milliseconds on a CPU, and the
    # Python launcher's share of that was a sixth (tiny preset, batch 1).
    return torch.compile(_fixed_shape_step, options={"cpp_wrapper": True})


class _SlotCache:
    """The cache seen from inside :func:`_fixed_shape_step`: per-layer tensors and a slot."""

    length = 0  # read by the model only to default the positions and the mask, both given

    def __init__(self, keys: list[torch.Tensor], values: list[torch.Tensor], slot: torch.Tensor):
        self.keys, self.values, self.slot = keys, values, slot

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor):
        self.keys[layer].index_copy_(2, self.slot, k)
        self.values[layer].index_copy_(2, self.slot, v)
        return self.keys[layer], self.values[layer]

    def advance(self, n: int) -> None:
        pass  # the caller advances the real cache, outside the graph


def _prefill_mask(key_valid: torch.Tensor) -> torch.Tensor:
    """Causal attention over real tokens only; a padding query sees itself (no empty rows)."""
    seq = key_valid.shape[1]
    causal = torch.ones(seq, seq, dtype=torch.bool, device=key_valid.device).tril()
    itself = torch.eye(seq, dtype=torch.bool, device=key_valid.device)
    return (causal & key_valid[:, None, None, :]) | itself
