"""A Geex ``CodeGeeX`` model as the serving engine's :class:`~geex.serve.engine.Runner`.

The KV cache is a slot pool, allocated once: per attention layer (the top query layer counts)
one key and one value tensor of ``(num_slots, heads, context, head_dim)``. That is
``2 * (n_layer + 1) * num_slots * context * d_model`` elements: 2 MiB a slot for the ``tiny``
preset in fp32, 1.56 GiB a slot for CodeGeeX-13B in fp16 (2,048 positions), see
:attr:`GeexRunner.cache_bytes`. Preallocating means a server that starts has the memory it will
need at full load, instead of running out of it mid-request.

``decode`` runs one forward pass for every running sequence: each row writes its new key and
value at its own position and attends to its own filled positions under a boolean mask. When the
rows are slots ``0 .. batch-1`` (the engine keeps them there with :meth:`GeexRunner.swap_slots`),
attention reads a view of the pool; any other set of slots is gathered first.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from geex.errors import GeexError
from geex.model.codegeex import CodeGeeX


class _SlotPrefill:
    """The pool seen by a prefill of one slot from ``start``: the model's ``kv_cache``."""

    def __init__(self, keys: list[torch.Tensor], values: list[torch.Tensor], slot: int, start: int):
        self.keys, self.values, self.slot, self.start = keys, values, slot, start
        self.length = start  # the model places the causal mask after these positions

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor):
        end = self.start + k.shape[2]
        self.keys[layer][self.slot, :, self.start : end] = k[0]
        self.values[layer][self.slot, :, self.start : end] = v[0]
        row = slice(self.slot, self.slot + 1)
        return self.keys[layer][row, :, :end], self.values[layer][row, :, :end]

    def advance(self, n: int) -> None:
        self.length += n


class _SlotDecode:
    """The pool seen by one batched decode step: row ``i`` is slot ``rows[i]`` at
    ``positions[i]``; attention reads the first ``keys`` positions of every row."""

    def __init__(self, keys, values, rows: torch.Tensor, positions: torch.Tensor, *, width: int,
                 contiguous: bool):  # fmt: skip
        self.keys, self.values, self.rows = keys, values, rows
        self.width, self.contiguous = width, contiguous
        self.length = width - 1  # read by the model only when no mask is given: all rows full
        # Where each (row, head) writes in a layer's pool seen as (slots * heads * context,
        # head_dim): one index_copy_ per tensor, several times faster than a 2-D index_put_.
        _, heads, context, _ = keys[0].shape
        head = torch.arange(heads, device=rows.device)
        self.flat = ((rows[:, None] * heads + head) * context + positions[:, None]).flatten()

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor):
        keys, values = self.keys[layer], self.values[layer]
        for pool, new in ((keys, k), (values, v)):
            pool.view(-1, pool.shape[-1]).index_copy_(0, self.flat, new.reshape(-1, new.shape[-1]))
        if self.contiguous:
            batch = len(self.rows)
            return keys[:batch, :, : self.width], values[:batch, :, : self.width]
        return (
            keys[:, :, : self.width].index_select(0, self.rows),
            values[:, :, : self.width].index_select(0, self.rows),
        )

    def advance(self, n: int) -> None:
        pass  # each slot's length is kept by the runner


class GeexRunner:
    """KV caches in numbered slots over a Geex model, decoded together."""

    def __init__(self, model: CodeGeeX, num_slots: int, *, vocab_size: int | None = None) -> None:
        if num_slots < 1:
            raise GeexError(f"num_slots must be at least 1, got {num_slots}")
        self.model = model.eval()
        # On a CPU in fp32, decode matmuls from oneDNN-packed weights (a no-op elsewhere).
        self.packed = model.pack_for_cpu_decoding()
        config = model.config
        self.num_slots = num_slots
        self.context_length = config.max_seq_len
        self.vocab_size = vocab_size or config.vocab_size
        weight = model.word_embeddings.weight
        self.device, self.dtype = weight.device, weight.dtype
        shape = (num_slots, config.n_head, self.context_length, config.head_dim)
        layers = range(config.n_attention_layers)
        self.keys = [torch.zeros(shape, dtype=self.dtype, device=self.device) for _ in layers]
        self.values = [torch.zeros(shape, dtype=self.dtype, device=self.device) for _ in layers]
        self.lengths = [0] * num_slots  # positions each slot holds

    @property
    def cache_bytes(self) -> int:
        """Memory of the slot pool (keys and values of every layer and slot)."""
        return sum(t.numel() * t.element_size() for t in (*self.keys, *self.values))

    def _check_slot(self, slot: int) -> None:
        if not 0 <= slot < self.num_slots:
            raise GeexError(f"slot {slot} is not in 0..{self.num_slots - 1}")

    @torch.inference_mode()
    def prefill(self, slot: int, token_ids: Sequence[int], start: int) -> torch.Tensor:
        self._check_slot(slot)
        if not 0 <= start <= self.lengths[slot]:
            raise GeexError(
                f"slot {slot} holds {self.lengths[slot]} positions; cannot start at {start}"
            )
        if not token_ids or start + len(token_ids) > self.context_length:
            raise GeexError(
                f"{start + len(token_ids)} positions (at least one new) do not fit the context "
                f"of {self.context_length}"
            )
        self.lengths[slot] = start  # a failure below leaves only the kept prefix valid
        ids = torch.tensor([list(token_ids)], dtype=torch.long, device=self.device)
        positions = torch.arange(start, start + ids.shape[1], device=self.device)[None]
        cache = _SlotPrefill(self.keys, self.values, slot, start)
        logits = self.model(ids, positions, kv_cache=cache, last_only=True)
        self.lengths[slot] = start + len(token_ids)
        return logits[0, -1, : self.vocab_size].float()

    @torch.inference_mode()
    def decode(
        self, slots: Sequence[int], token_ids: Sequence[int], positions: Sequence[int]
    ) -> torch.Tensor:
        slots, positions = list(slots), list(positions)
        if not slots or not len(slots) == len(token_ids) == len(positions):
            raise GeexError("decode needs one token and one position for each slot, at least one")
        if len(set(slots)) != len(slots):
            raise GeexError(f"a slot appears twice in one decode step: {slots}")
        for slot, position in zip(slots, positions, strict=True):
            self._check_slot(slot)
            if position != self.lengths[slot] or position >= self.context_length:
                raise GeexError(
                    f"slot {slot} holds {self.lengths[slot]} positions; cannot decode at "
                    f"{position} (context {self.context_length})"
                )
        width = max(positions) + 1
        device = self.device
        rows = torch.tensor(slots, dtype=torch.long, device=device)
        where = torch.tensor(positions, dtype=torch.long, device=device)
        ids = torch.tensor(list(token_ids), dtype=torch.long, device=device)[:, None]
        cache = _SlotDecode(self.keys, self.values, rows, where, width=width,
                            contiguous=slots == list(range(len(slots))))  # fmt: skip
        mask = None
        if min(positions) != width - 1:  # rows of different lengths: each sees its own
            mask = (torch.arange(width, device=device) <= where[:, None])[:, None, None, :]
        logits = self.model(ids, where[:, None], kv_cache=cache, attn_mask=mask)
        for slot in slots:
            self.lengths[slot] += 1
        return logits[:, -1, : self.vocab_size].float()

    @torch.inference_mode()
    def copy_slot(self, source: int, target: int, length: int) -> None:
        self._check_slot(source)
        self._check_slot(target)
        if not 0 <= length <= self.lengths[source]:
            raise GeexError(f"slot {source} holds {self.lengths[source]} positions, not {length}")
        if source != target:
            for tensor in (*self.keys, *self.values):
                tensor[target, :, :length] = tensor[source, :, :length]
        self.lengths[target] = length

    @torch.inference_mode()
    def swap_slots(self, a: int, b: int) -> None:
        """Exchange two slots' caches: the engine keeps running sequences in the lowest slots so
        that ``decode`` reads a view of the pool rather than gathering every row each step."""
        self._check_slot(a)
        self._check_slot(b)
        if a == b:
            return
        filled = max(self.lengths[a], self.lengths[b])
        for tensor in (*self.keys, *self.values):
            held = tensor[a, :, :filled].clone()
            tensor[a, :, :filled] = tensor[b, :, :filled]
            tensor[b, :, :filled] = held
        self.lengths[a], self.lengths[b] = self.lengths[b], self.lengths[a]


class GeexCodec:
    """A Geex :class:`~geex.tokenizer.Tokenizer` as the engine's ``TextCodec``."""

    def __init__(self, tokenizer) -> None:
        self.tokenizer = tokenizer
        self.vocab_size = tokenizer.vocab_size
        self.eos_ids = frozenset({tokenizer.eod_id})

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text)

    def heal(self, ids: Sequence[int]):
        """The prompt with its last pre-token backed up (:mod:`geex.tokenizer.healing`)."""
        from geex.tokenizer.healing import heal_prompt

        return heal_prompt(self.tokenizer, ids)

    def decode(self, ids: Sequence[int]) -> str:
        """The text of generated ids, special tokens skipped (``Tokenizer.decode_text``)."""
        return self.tokenizer.decode_text(ids)
