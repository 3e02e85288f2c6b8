"""How many bytes of text each token id stands for: the denominator of bits per byte.

Loss per token depends on the tokenizer (a token of 4 bytes is harder to guess than one of 1);
bits per byte divides the same information by the UTF-8 bytes of the text instead, so models
with different vocabularies compare on one scale. Over a stretch of token ids, the byte count
is the sum of a per-id table built here once, with no decoding in the training loop.

Special tokens (end of document, the fill-in-the-middle markers, CodeGeeX's unused extra
tokens) count 0 bytes: they are structure, not text, and a text has as many bytes whichever
tokenizer marks its boundaries. Bits per byte leaves their loss out as well, so that the
number of documents in a window does not move it.

A byte-level BPE (GPT-2's, CodeGeeX's, those ``geex tokenizer train`` makes) spells each byte
as one character of a 256-character alphabet. Its decoder turns each character of a token back
into its byte, and writes a token holding any character outside that alphabet (an added token
such as CodeGeeX's run of four spaces, or a language tag line) as that token's own UTF-8
bytes. The table follows the same rule, so over any ids it sums to the byte length of their
decoded text. Other decoders (SentencePiece's, WordPiece's) join pieces by rules of their own
(a leading space dropped, "##" glued): for them no table is given.
"""

from __future__ import annotations

import functools

import numpy as np
import tokenizers
from tokenizers import decoders

from geex.tokenizer.tokenizer import Tokenizer


def token_byte_lengths(tokenizer: Tokenizer) -> np.ndarray | None:
    """``lengths[id]``: the UTF-8 bytes token ``id`` decodes to, 0 for special tokens; None
    where the tokenizer's decoder is not byte-level (see the module docstring)."""
    table = token_bytes(tokenizer)
    if table is None:
        return None
    return np.array([0 if piece is None else len(piece) for piece in table], dtype=np.int64)


def token_bytes(tokenizer: Tokenizer | tokenizers.Tokenizer) -> list[bytes | None] | None:
    """``pieces[id]``: the bytes token ``id`` decodes to, None for special tokens and unused
    ids; None where the tokenizer's decoder is not byte-level (see the module docstring).
    Geex's tokenizer or a ``tokenizers`` one (a Hugging Face fast tokenizer's backend)."""
    backend = tokenizer.backend if isinstance(tokenizer, Tokenizer) else tokenizer
    if not isinstance(backend.decoder, decoders.ByteLevel):
        return None
    vocab = backend.get_vocab(with_added_tokens=True)
    special = {i for i, token in backend.get_added_tokens_decoder().items() if token.special}
    byte_of = _byte_of_character()
    size = max(backend.get_vocab_size(with_added_tokens=True), max(vocab.values()) + 1)
    pieces: list[bytes | None] = [None] * size
    for token, token_id in vocab.items():
        if token_id in special:
            continue
        if all(character in byte_of for character in token):
            pieces[token_id] = bytes(byte_of[character] for character in token)
        else:
            pieces[token_id] = token.encode("utf-8")
    return pieces


@functools.cache
def _byte_of_character() -> dict[str, int]:
    """GPT-2's byte-level alphabet, read backwards: printable bytes stand for themselves, the
    others (controls, space, ...) for the characters from U+0100 on, in byte order."""
    printable = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAC + 1), *range(0xAE, 0xFF + 1)]
    shifted = [b for b in range(256) if b not in printable]
    mapping = {chr(b): b for b in printable}
    mapping.update({chr(256 + k): b for k, b in enumerate(shifted)})
    return mapping
