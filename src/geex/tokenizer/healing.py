"""Token healing: the model chooses the prompt's last token again, as the start of its answer.

A prompt ends where its writer stopped (an editor's cursor, a benchmark's prompt), not where
the tokenizer would end a token in the middle of a file. Geex's tokenizers keep a line break
with the indentation after it, and a bracket or colon with the line break after it, so a
function body in training reads ``" {\\n    "`` then ``"return"``; a prompt that stops after
the line break ends with ``" {\\n"``, a token the model has only seen before unindented lines.
A young model then writes column-0 text where the body belongs (a closing brace, a comment).

Healing (Lundberg, 2023; llama.cpp's and transformers' ``token_healing``) backs up over the
tokens of the prompt's last pre-token (the unit the tokenizer's split rule ends with, ``" {\n"``
or ``"\"\"\"\n"``, never more than :data:`MAX_TOKENS`) and has the model spell those bytes
again under a constraint: each new token must either start with the bytes still owed or be a
beginning of them. ``" {\n    "`` is then allowed, and the model picks what training taught
it. The completion handed back loses the owed bytes again, so the caller sees text that follows
its prompt exactly.

Only byte-level tokenizers are healed (their tokens' bytes are known; see
:mod:`geex.tokenizer.token_bytes`). Added tokens stop the backing up: special ones (a FIM
marker) end a prompt on purpose, and a language tag line is a unit of its own; an added token
of spaces that ends the prompt (CodeGeeX's runs of spaces) is backed up alone.
"""

from __future__ import annotations

import bisect
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field

import tokenizers

from geex.tokenizer.token_bytes import token_bytes
from geex.tokenizer.tokenizer import Tokenizer

# Tokens backed up at most: a long last word (a run of "=" in a comment) is rewritten only so far.
MAX_TOKENS = 8
# Characters of the prompt's end that the split rule is run on to find its last pre-token.
_WINDOW = 256


class _TokenBytes:
    """Token ids by their bytes: exact lookups, and those starting with given bytes as one run
    of a sorted list."""

    def __init__(self, pieces: list[bytes | None], added: frozenset[int]) -> None:
        self.pieces, self.added = pieces, added
        entries = sorted((piece, i) for i, piece in enumerate(pieces) if piece)
        self.keys = [piece for piece, _ in entries]
        self.ids = [i for _, i in entries]
        self.by_bytes = {piece: i for piece, i in entries if i not in added}

    def consistent_with(self, owed: bytes) -> tuple[int, ...]:
        """Ids whose bytes start with ``owed`` or are a beginning of it."""
        start = bisect.bisect_left(self.keys, owed)
        end = start
        while end < len(self.keys) and self.keys[end].startswith(owed):
            end += 1
        beginnings = (self.by_bytes.get(owed[:k]) for k in range(1, len(owed)))
        return (*self.ids[start:end], *(i for i in beginnings if i is not None))


@dataclass
class HealedPrompt:
    """A prompt's ids with its last pre-token backed up (``tail``, owed again by the model).

    :meth:`allowed` constrains each new token until the tail is spelled out again;
    :meth:`completion` cuts the tail off the generated text. Not healed: ``tail`` is empty.
    """

    ids: list[int]
    tail: str = ""
    _index: _TokenBytes | None = field(default=None, repr=False)

    def allowed(self, generated: Sequence[int]) -> tuple[int, ...] | None:
        """The ids the next token may take after ``generated``; None: any."""
        owed = self.tail.encode("utf-8")
        for token in generated:
            if not owed:
                return None
            piece = self._index.pieces[token] or b""
            owed = owed[len(piece) :] if owed.startswith(piece) else b""
        return self._index.consistent_with(owed) if owed else None

    def completion(self, text: str) -> str:
        """The text after the caller's prompt, from the text generated after :attr:`ids`
        (empty while the tail is not yet spelled out)."""
        return text[len(self.tail) :] if text.startswith(self.tail) else ""


_INDEXES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _index(backend: tokenizers.Tokenizer) -> _TokenBytes | None:
    if backend not in _INDEXES:
        pieces = token_bytes(backend)
        added = frozenset(backend.get_added_tokens_decoder())
        _INDEXES[backend] = None if pieces is None else _TokenBytes(pieces, added)
    return _INDEXES[backend]


def heal_prompt(
    tokenizer: Tokenizer | tokenizers.Tokenizer | None, ids: Sequence[int]
) -> HealedPrompt:
    """``ids`` without the tokens of its last pre-token, which the model writes again, or
    ``ids`` unchanged where healing does not apply (see the module docstring). Geex's
    tokenizer or a ``tokenizers`` one (a Hugging Face fast tokenizer's backend); None (healing
    off, or a tokenizer that does not say each token's bytes) leaves the prompt whole."""
    ids = list(ids)
    backend = tokenizer.backend if isinstance(tokenizer, Tokenizer) else tokenizer
    if not isinstance(backend, tokenizers.Tokenizer):  # no bytes per token to go by
        return HealedPrompt(ids)
    index = _index(backend)
    if (
        index is None
        or len(ids) < 2
        or not all(0 <= i < len(index.pieces) for i in ids[-MAX_TOKENS:])
    ):
        return HealedPrompt(ids)
    if index.pieces[ids[-1]] is None:  # a special token
        return HealedPrompt(ids)
    if ids[-1] in index.added:
        if not index.pieces[ids[-1]].isspace():  # a language tag line: a unit of its own
            return HealedPrompt(ids)
        backed = 1
    else:
        owed = _last_pretoken_bytes(backend, ids)
        backed, size = 0, 0
        while backed < min(MAX_TOKENS, len(ids) - 1):
            token = ids[-1 - backed]
            piece = index.pieces[token]
            if piece is None or token in index.added or size + len(piece) > owed:
                break
            backed, size = backed + 1, size + len(piece)
        backed = max(backed, 1)
    tail_bytes = b"".join(index.pieces[i] for i in ids[len(ids) - backed :])
    try:
        tail = tail_bytes.decode("utf-8")
    except UnicodeDecodeError:  # part of a character: its other bytes are further back
        return HealedPrompt(ids)
    healed = HealedPrompt(ids[:-backed], tail, index)
    if healed.allowed([]) == (ids[-1],) and backed == 1:  # nothing else to choose
        return HealedPrompt(ids)
    return healed


def _last_pretoken_bytes(backend: tokenizers.Tokenizer, ids: list[int]) -> int:
    """The UTF-8 length of the prompt's last pre-token under the tokenizer's split rule (that
    of its last token where the tokenizer has no split rule)."""
    pre_tokenizer = backend.pre_tokenizer
    if pre_tokenizer is None:
        return 0
    text = backend.decode(ids[-_WINDOW:], skip_special_tokens=False)[-_WINDOW:]
    pieces = pre_tokenizer.pre_tokenize_str(text)
    if not pieces:
        return 0
    start, end = pieces[-1][1]
    return len(text[start:end].encode("utf-8"))
