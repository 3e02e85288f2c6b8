"""What ``geex serve`` serves: a model, its tokenizer, and how to prompt it.

A :class:`ServedModel` bundles the engine's two halves (the :class:`~geex.serve.engine.Runner`
and the :class:`~geex.serve.engine.TextCodec`) with what the protocols need to build prompts:
the fill-in-the-middle convention and the chat template. This version serves Geex checkpoints
(a converted CodeGeeX-13B is one) with Geex's own FIM tokens.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from geex.errors import GeexError
from geex.serve.engine import Runner, TextCodec


@dataclass(frozen=True)
class FimTokens:
    """The ids that frame an infill: prefix, suffix, middle, in prefix-suffix-middle order."""

    prefix: int
    suffix: int
    middle: int
    end_ids: frozenset[int] = frozenset()  # tokens that end the middle besides the codec's


@dataclass
class ServedModel:
    name: str
    runner: Runner
    codec: TextCodec
    fim: FimTokens | None  # None: no FIM tokens, a request with a suffix is refused
    chat_template: str | None = None
    kind: str = "geex"
    created: int = field(default_factory=lambda: int(time.time()))

    @property
    def context_length(self) -> int:
        return self.runner.context_length

    @property
    def stop_token_ids(self) -> frozenset[int]:
        return self.fim.end_ids if self.fim else frozenset()

    def fim_prompt_ids(self, prefix: str, suffix: str, *, max_prompt_tokens: int) -> list[int]:
        """``prefix``, ``suffix`` framed for infilling, cut to ``max_prompt_tokens``: the prefix
        loses its start, the suffix its end, as editors expect of a file too long to send whole."""
        if self.fim is None:
            raise GeexError(
                f"model {self.name} has no fill-in-the-middle tokens, so it cannot use a suffix"
            )
        before, after = self.codec.encode(prefix), self.codec.encode(suffix)
        room = max_prompt_tokens - 3
        if room < 1:
            raise GeexError(f"max_prompt_tokens {max_prompt_tokens} leaves no room for text")
        keep_after = min(len(after), max(room - len(before), room // 4))
        keep_before = min(len(before), room - keep_after)
        before = before[len(before) - keep_before :]
        after = after[:keep_after]
        return [self.fim.prefix, *before, self.fim.suffix, *after, self.fim.middle]

    def chat_prompt_ids(self, messages: Sequence[dict]) -> list[int]:
        """A base model's chat prompt: each message as a labelled paragraph, then the answer's
        label."""
        lines = []
        for message in messages:
            role = str(message.get("role", "user")).capitalize()
            lines.append(f"{role}: {message.get('content', '')}\n")
        lines.append("Assistant:")
        return self.codec.encode("\n".join(lines))


def load_served_model(
    path: str | os.PathLike,
    *,
    tokenizer: str | os.PathLike | None = None,
    device: str = "auto",
    dtype: str = "auto",
    name: str | None = None,
    max_slots: int = 16,
) -> ServedModel:
    """A Geex checkpoint folder ready to serve."""
    from geex.model.loader import load_for_inference
    from geex.serve.geex_runner import GeexRunner, geex_codec

    loaded = load_for_inference(path, tokenizer=tokenizer, device=device, dtype=dtype)
    tok = loaded.tokenizer
    fim = None
    if None not in (tok.fim_prefix_id, tok.fim_suffix_id, tok.fim_middle_id):
        ends = frozenset(i for i in (tok.fim_pad_id,) if i is not None)
        fim = FimTokens(tok.fim_prefix_id, tok.fim_suffix_id, tok.fim_middle_id, ends)
    runner = GeexRunner(loaded.model, max_slots, vocab_size=tok.vocab_size)
    return ServedModel(name or loaded.name, runner, geex_codec(tok), fim)
