"""Any ``transformers`` causal language model behind the serving engine.

:class:`HFRunner` is the engine's ``Runner`` over an ``AutoModelForCausalLM``: each slot is one
sequence with its own ``DynamicCache``. ``prefill`` at ``start`` crops the slot's cache to its
first ``start`` positions and runs the new tokens on top (a reused prompt prefix costs
nothing); ``decode`` runs one token for every slot in one forward, the caches left-padded to
the longest and the padding masked (models whose caches are not plain per-layer tensors,
such as sliding-window ones, decode a slot at a time). A sliding-window layer keeps only its
window, so a slot whose sequence outgrew the window cannot be cut back to a shorter prefix:
:meth:`HFRunner.reusable_prefix` then says 0 and the engine prefills the prompt whole.

:class:`HFCodec` is the engine's ``TextCodec`` over the model's ``AutoTokenizer``, and what
:mod:`geex.serve.models` needs for FIM and chat prompts: the vocabulary, the ids the tokenizer
puts before a prompt (a BOS), plain-text and rendered-template encodings.

``transformers`` is optional (``geex[hf]``): this module imports without it, and the loader
(:mod:`geex.model.hf_loading`) says what to install.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Mapping, Sequence

import torch

from geex.errors import GeexError


class HFRunner:
    """A ``transformers`` causal LM's KV cache in ``num_slots`` numbered slots."""

    def __init__(
        self,
        model,
        num_slots: int,
        *,
        vocab_size: int | None = None,
        context_length: int | None = None,
    ) -> None:
        if num_slots < 1:
            raise GeexError(f"num_slots must be at least 1, got {num_slots}")
        self.model = model.eval()
        self.device = next(model.parameters()).device
        output_rows = model.get_output_embeddings().weight.shape[0]
        self.vocab_size = vocab_size or output_rows
        if self.vocab_size > output_rows:
            raise GeexError(
                f"the tokenizer has {self.vocab_size:,} ids but the model scores only "
                f"{output_rows:,}: they were not trained together"
            )
        self.context_length = context_length or model_context_length(model.config)
        self.num_slots = num_slots
        self._caches: list = [None] * num_slots
        # transformers 5 renamed past_key_values to cache, and num_logits_to_keep (4.45)
        # became logits_to_keep (4.50): each is read off the installed version's signature.
        forward = inspect.signature(model.forward).parameters
        self._cache_kwarg = "cache" if "cache" in forward else "past_key_values"
        keep = [k for k in ("logits_to_keep", "num_logits_to_keep") if k in forward]
        self._keep_kwarg = keep[0] if keep else None
        # Batching slots of different lengths needs a padding mask and explicit positions.
        self._batchable = {"attention_mask", "position_ids"} <= forward.keys()

    # --- the Runner protocol ---------------------------------------------------------------

    def prefill(self, slot: int, token_ids: Sequence[int], start: int) -> torch.Tensor:
        """Cache positions ``start..start+len-1`` of ``slot`` (positions below ``start`` are
        kept); float32 logits ``(vocab_size,)`` of the last position."""
        self._check_slot(slot)
        if not token_ids:
            raise GeexError("prefill needs at least one token")
        if start + len(token_ids) > self.context_length:
            raise GeexError(
                f"{start + len(token_ids)} positions exceed the model's context of "
                f"{self.context_length}"
            )
        if start == 0 or self._caches[slot] is None:
            if start != 0:
                raise GeexError(f"slot {slot} holds no cache to keep {start} positions of")
            self._caches[slot] = self._new_cache()
        else:
            self._crop(self._caches[slot], start, slot)
        return self._forward(slot, token_ids)[0]

    def decode(
        self, slots: Sequence[int], token_ids: Sequence[int], positions: Sequence[int]
    ) -> torch.Tensor:
        """One new token per slot at its position; float32 logits ``(len(slots), vocab_size)``."""
        if not len(slots) == len(token_ids) == len(positions):
            raise GeexError("decode needs one token and one position per slot")
        caches = []
        for slot, position in zip(slots, positions, strict=True):
            self._check_slot(slot)
            cache = self._caches[slot]
            if cache is None:
                raise GeexError(f"slot {slot} was never prefilled")
            if position >= self.context_length:
                raise GeexError(f"position {position} is past the context of {self.context_length}")
            self._crop(cache, position, slot)
            caches.append(cache)
        if len(slots) > 1 and self._batchable and all(map(_plain_layers, caches)):
            return self._decode_batch(caches, token_ids, positions)
        rows = [self._forward(slot, [token]) for slot, token in zip(slots, token_ids, strict=True)]
        return torch.cat(rows) if rows else torch.empty(0, self.vocab_size)

    def copy_slot(self, source: int, target: int, length: int) -> None:
        """The first ``length`` cached positions of ``source`` into ``target``."""
        self._check_slot(source)
        self._check_slot(target)
        cache = self._caches[source]
        if cache is None:
            raise GeexError(f"slot {source} holds no cache to copy")
        if source == target:
            self._crop(cache, length, source)
            return
        with torch.inference_mode():
            copied = copy.deepcopy(cache)
        self._crop(copied, length, source)
        self._caches[target] = copied

    def reusable_prefix(self, slot: int, length: int) -> int:
        """How many of ``slot``'s first ``length`` cached positions a prefill may keep: all of
        them where the cache holds exactly that many or can be cut back to them, else none.

        transformers refuses to crop a sliding-window layer that has dropped positions off its
        window, and layers that are not plain key/value lists (linear attention) hold a state
        that cannot be cut back at all."""
        self._check_slot(slot)
        cache = self._caches[slot]
        if cache is None:
            return 0
        held = cache.get_seq_length()
        length = min(length, held)
        return length if length == held or self._croppable(cache) else 0

    def cached_length(self, slot: int) -> int:
        """Positions ``slot`` holds (0 for an empty slot)."""
        self._check_slot(slot)
        cache = self._caches[slot]
        return 0 if cache is None else cache.get_seq_length()

    # --- internals -------------------------------------------------------------------------

    def _forward(self, slot: int, token_ids: Sequence[int]) -> torch.Tensor:
        ids = torch.tensor([list(token_ids)], dtype=torch.long, device=self.device)
        options = {self._cache_kwarg: self._caches[slot], "use_cache": True}
        if self._keep_kwarg is not None:
            options[self._keep_kwarg] = 1  # the last position's logits are all a step needs
        with torch.inference_mode():
            out = self.model(input_ids=ids, **options)
        return out.logits[:, -1, : self.vocab_size].float()

    def _decode_batch(self, caches: list, token_ids: Sequence[int], positions: Sequence[int]):
        """One forward for every slot: each cache left-padded to the longest, the padding
        masked out, each row at its own position; each slot's cache then takes its new
        column. Copying the caches costs about what attention reads of them anyway, and one
        forward instead of one per slot is what keeps a GPU busy."""
        from geex.model.hf_loading import import_transformers

        longest = max(positions)
        batch = import_transformers().DynamicCache()
        for layer in range(len(caches[0].layers)):
            keys = [c.layers[layer].keys for c in caches]
            values = [c.layers[layer].values for c in caches]
            batch.update(_left_pad(keys, longest), _left_pad(values, longest), layer)
        mask = torch.zeros(len(caches), longest + 1, dtype=torch.long, device=self.device)
        for row, position in enumerate(positions):
            mask[row, longest - position :] = 1
        options = {self._cache_kwarg: batch, "use_cache": True}
        if self._keep_kwarg is not None:
            options[self._keep_kwarg] = 1
        with torch.inference_mode():
            out = self.model(
                input_ids=torch.tensor([[t] for t in token_ids], device=self.device),
                attention_mask=mask,
                position_ids=torch.tensor([[p] for p in positions], device=self.device),
                **options,
            )
            for layer, batched in enumerate(batch.layers):
                for row, cache in enumerate(caches):
                    new = slice(row, row + 1), slice(None), slice(-1, None)
                    cache.update(batched.keys[new], batched.values[new], layer)
        return out.logits[:, -1, : self.vocab_size].float()

    def _new_cache(self):
        from geex.model.hf_loading import import_transformers

        dynamic_cache = import_transformers().DynamicCache
        try:  # the config tells it which layers use a sliding window (transformers >= 4.56)
            return dynamic_cache(config=self.model.config)
        except TypeError:
            return dynamic_cache()

    def _croppable(self, cache) -> bool:
        layers = getattr(cache, "layers", None)
        if layers is None:  # transformers before 4.54: a key/value list per layer
            return getattr(self.model.config, "sliding_window", None) is None
        for layer in layers:
            kind = type(layer).__name__
            if kind == "DynamicLayer":
                continue
            if (
                kind == "DynamicSlidingWindowLayer"
                and layer.get_seq_length() < layer.sliding_window
            ):
                continue  # nothing has left the window yet
            return False
        return True

    def _crop(self, cache, length: int, slot: int) -> None:
        held = cache.get_seq_length()
        if length > held:
            raise GeexError(f"slot {slot} holds {held} positions, not the {length} asked for")
        if length == held:
            return
        # A negative count removes that many positions in every transformers version (4.x
        # took the length to keep, 5.x the count to remove; both read -n as "drop n").
        cache.crop(length - held)

    def _check_slot(self, slot: int) -> None:
        if not 0 <= slot < self.num_slots:
            raise GeexError(f"slot {slot} is out of range (0..{self.num_slots - 1})")


def _plain_layers(cache) -> bool:
    """Whether every layer of ``cache`` holds all its positions (transformers' DynamicLayer),
    so that caches can be padded and stacked; sliding-window and linear-attention layers, and
    the layouts of transformers before 4.54, decode a slot at a time."""
    layers = getattr(cache, "layers", None)
    return bool(layers) and all(
        type(layer).__name__ == "DynamicLayer" and getattr(layer, "keys", None) is not None
        for layer in layers
    )


def _left_pad(tensors: list[torch.Tensor], length: int) -> torch.Tensor:
    """``(1, heads, n_i, dim)`` tensors as one ``(batch, heads, length, dim)``, right-aligned."""
    first = tensors[0]
    out = first.new_zeros(len(tensors), first.shape[1], length, first.shape[3])
    for row, tensor in enumerate(tensors):
        out[row, :, length - tensor.shape[2] :] = tensor[0]
    return out


def model_context_length(config) -> int:
    """The positions a model was built for, under the names configs use for it."""
    for key in ("max_position_embeddings", "n_positions", "max_seq_len", "seq_length", "n_ctx"):
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    raise GeexError("the model's config names no context length (max_position_embeddings)")


class HFCodec:
    """Text <-> ids through a ``transformers`` tokenizer.

    ``encode`` encodes a prompt as the model's own tokenizer does, with the ids it puts
    before every prompt (Llama's and Gemma's BOS; none for GPT-2 or Qwen). Special-token
    names in a prompt stay text, as in Geex's own tokenizer: a file that contains
    ``<|endoftext|>`` must not end the prompt there.
    """

    def __init__(self, tokenizer, generation_config=None) -> None:
        self.tokenizer = tokenizer
        self.vocab: Mapping[str, int] = tokenizer.get_vocab()
        self.vocab_size = len(tokenizer)
        eos = getattr(generation_config, "eos_token_id", None)
        eos = eos if isinstance(eos, list) else [eos] if eos is not None else []
        self.eos_ids = frozenset({*eos, tokenizer.eos_token_id} - {None})
        self.leading_ids = self._leading_ids()
        self._anchor = self.encode_text("a")
        self._anchor_text = self._decode(self._anchor)

    def encode(self, text: str) -> list[int]:
        return [*self.leading_ids, *self.encode_text(text)]

    def heal(self, ids: Sequence[int]):
        """The prompt with its last pre-token backed up (:mod:`geex.tokenizer.healing`), for a
        fast tokenizer (whose ``tokenizers`` backend says what each token's bytes are)."""
        from geex.tokenizer.healing import heal_prompt

        return heal_prompt(getattr(self.tokenizer, "backend_tokenizer", None), ids)

    def decode(self, ids: Sequence[int]) -> str:
        """The text of ``ids`` as a continuation of what came before them.

        SentencePiece decoders drop the "▁" (space) of a text's first token, right for a whole
        text but wrong for generated tokens that follow a prompt (" return" would come out as
        "return"). So the ids are decoded behind an anchor token whose own text is then cut
        off, as Code Llama's ``decode_infilling`` does; byte-level decoders are unaffected.
        """
        text = self._decode([*self._anchor, *ids])
        if text.startswith(self._anchor_text):
            return text[len(self._anchor_text) :]
        return self._decode(list(ids))

    def encode_text(self, text: str) -> list[int]:
        """``text``'s ids alone: no BOS, special-token names as text."""
        return self._encode(text, split_special_tokens=True)

    def encode_rendered(self, text: str) -> list[int]:
        """A rendered chat template's ids: its special-token names are those tokens, and its
        own BOS (templates write ``{{ bos_token }}``) is the only one."""
        return self._encode(text, split_special_tokens=False)

    def render_chat(self, template: str, messages: list[dict]) -> str:
        """``template`` rendered by the tokenizer's ``apply_chat_template``."""
        from jinja2.exceptions import TemplateError

        try:
            return self.tokenizer.apply_chat_template(
                messages, chat_template=template, add_generation_prompt=True, tokenize=False
            )
        except TemplateError as err:
            raise GeexError(f"the chat template cannot render these messages: {err}") from None

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(
            ids, skip_special_tokens=False, clean_up_tokenization_spaces=False
        )

    def _encode(self, text: str, *, split_special_tokens: bool) -> list[int]:
        return self.tokenizer(
            text, add_special_tokens=False, split_special_tokens=split_special_tokens
        )["input_ids"]

    def _leading_ids(self) -> tuple[int, ...]:
        """What the tokenizer puts before a text: compare a text's ids with and without."""
        plain = self.tokenizer("a", add_special_tokens=False)["input_ids"]
        full = self.tokenizer("a", add_special_tokens=True)["input_ids"]
        for i in range(len(full) - len(plain) + 1):
            if full[i : i + len(plain)] == plain:
                return tuple(full[:i])
        return ()
