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

import numpy as np
from tokenizers import decoders, pre_tokenizers

from geex.tokenizer.tokenizer import Tokenizer

_BYTE_ALPHABET = frozenset(pre_tokenizers.ByteLevel.alphabet())


def token_byte_lengths(tokenizer: Tokenizer) -> np.ndarray | None:
    """``lengths[id]``: the UTF-8 bytes token ``id`` decodes to, 0 for special tokens; None
    where the tokenizer's decoder is not byte-level (see the module docstring)."""
    backend = tokenizer.backend
    if not isinstance(backend.decoder, decoders.ByteLevel):
        return None
    vocab = backend.get_vocab(with_added_tokens=True)
    special = {i for i, token in backend.get_added_tokens_decoder().items() if token.special}
    lengths = np.zeros(max(tokenizer.vocab_size, max(vocab.values()) + 1), dtype=np.int64)
    for token, token_id in vocab.items():
        if token_id in special:
            continue
        in_alphabet = all(character in _BYTE_ALPHABET for character in token)
        lengths[token_id] = len(token) if in_alphabet else len(token.encode("utf-8"))
    return lengths
