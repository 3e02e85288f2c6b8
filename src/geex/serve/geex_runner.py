"""A Geex ``CodeGeeX`` model as the serving engine's :class:`~geex.serve.engine.Runner`.

Each slot owns a :class:`~geex.model.codegeex.KVCache` of one row, allocated on first use and
sized to the model's context. ``decode`` runs the slots one after another.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from geex.errors import GeexError
from geex.model.codegeex import CodeGeeX, KVCache


class GeexRunner:
    """KV caches in numbered slots over a Geex model."""

    def __init__(self, model: CodeGeeX, num_slots: int, *, vocab_size: int | None = None) -> None:
        if num_slots < 1:
            raise GeexError(f"num_slots must be at least 1, got {num_slots}")
        self.model = model.eval()
        self.num_slots = num_slots
        self.context_length = model.config.max_seq_len
        self.vocab_size = vocab_size or model.config.vocab_size
        weight = model.word_embeddings.weight
        self.device, self.dtype = weight.device, weight.dtype
        self._caches: list[KVCache | None] = [None] * num_slots

    def _cache(self, slot: int) -> KVCache:
        if not 0 <= slot < self.num_slots:
            raise GeexError(f"slot {slot} is not in 0..{self.num_slots - 1}")
        if self._caches[slot] is None:
            self._caches[slot] = KVCache(
                self.model.config, 1, self.context_length, dtype=self.dtype, device=self.device
            )
        return self._caches[slot]

    @torch.inference_mode()
    def prefill(self, slot: int, token_ids: Sequence[int], start: int) -> torch.Tensor:
        cache = self._cache(slot)
        if not 0 <= start <= cache.length:
            raise GeexError(f"slot {slot} holds {cache.length} positions; cannot start at {start}")
        if start + len(token_ids) > self.context_length:
            raise GeexError(
                f"{start + len(token_ids)} positions do not fit the context of "
                f"{self.context_length}"
            )
        cache.length = start
        ids = torch.tensor([list(token_ids)], dtype=torch.long, device=self.device)
        positions = torch.arange(start, start + ids.shape[1], device=self.device)[None]
        logits = self.model(ids, positions, kv_cache=cache)
        return logits[0, -1, : self.vocab_size].float()

    @torch.inference_mode()
    def decode(
        self, slots: Sequence[int], token_ids: Sequence[int], positions: Sequence[int]
    ) -> torch.Tensor:
        rows = []
        for slot, token, position in zip(slots, token_ids, positions, strict=True):
            cache = self._cache(slot)
            if position != cache.length:
                raise GeexError(
                    f"slot {slot} holds {cache.length} positions; cannot decode at {position}"
                )
            ids = torch.tensor([[token]], dtype=torch.long, device=self.device)
            where = torch.tensor([[position]], dtype=torch.long, device=self.device)
            rows.append(self.model(ids, where, kv_cache=cache)[0, -1, : self.vocab_size])
        return torch.stack(rows).float()

    def copy_slot(self, source: int, target: int, length: int) -> None:
        src, dst = self._cache(source), self._cache(target)
        if length > src.length:
            raise GeexError(f"slot {source} holds {src.length} positions, not {length}")
        for layer in range(len(src.layer_keys)):
            dst.layer_keys[layer][:, :, :length] = src.layer_keys[layer][:, :, :length]
            dst.layer_values[layer][:, :, :length] = src.layer_values[layer][:, :, :length]
        dst.length = length


class GeexCodec:
    """A Geex :class:`~geex.tokenizer.Tokenizer` as the engine's ``TextCodec``."""

    def __init__(self, tokenizer) -> None:
        self.tokenizer = tokenizer
        self.vocab_size = tokenizer.vocab_size
        self.eos_ids = frozenset({tokenizer.eod_id})

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text)

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(ids)


def geex_codec(tokenizer) -> GeexCodec:
    return GeexCodec(tokenizer)
