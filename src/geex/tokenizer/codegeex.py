"""The CodeGeeX-13B tokenizer, rebuilt exactly from its ``vocab.json`` and ``merges.txt``.

CodeGeeX (``codegeex/tokenizer/tokenizer.py`` in THUDM/CodeGeeX) uses GPT-2's byte-level BPE
(50,257 tokens) plus ``<|extratoken_1|>``..``<|extratoken_143|>`` (ids 50,257..50,399), and
before BPE rewrites runs of spaces: for n = 10 down to 2 it replaces every n spaces with
``<|extratoken_{n+8}|>``. Longest first over the whole text, that cuts each run of spaces
from the left into chunks of ten, then one chunk of the 2..9 left over, or leaves a single
space as a plain space (12 spaces -> extratoken_18 + extratoken_10; 11 -> extratoken_18 + " ").
Only ' ' counts: tabs and newlines go to BPE unchanged.

Here the nine whitespace tokens are added tokens whose *content is the run of spaces itself*,
matched leftmost-longest on the raw text, which is the same cut. Decoding needs nothing extra:
the byte-level decoder writes a token that is not in its alphabet (a raw space is not; GPT-2
spells a space "Ġ") as its own bytes. The obvious alternative, a normalizer that rewrites the
spaces to ``<|extratoken_12|>`` with the markers as normalized added tokens, cannot tell the
rewritten spaces from a file that literally contains that marker, so it would decode such a
file to spaces.
"""

from __future__ import annotations

import json
from pathlib import Path

import tokenizers
from tokenizers import AddedToken, decoders, models, pre_tokenizers

from geex.errors import GeexError
from geex.tokenizer.tokenizer import EOD_TOKEN, Tokenizer

GPT2_VOCAB_SIZE = 50_257
EOD_ID = 50_256
EXTRA_TOKEN_COUNT = 143
VOCAB_SIZE = GPT2_VOCAB_SIZE + EXTRA_TOKEN_COUNT  # 50,400
# CodeGeeX's encode_whitespaces(text, start_extra_id=10, max_len=10): runs of 2..10 spaces.
WHITESPACE_RUN_LENGTHS = range(2, 11)
_FIRST_WHITESPACE_EXTRATOKEN = 10


def extra_token(n: int) -> str:
    """The name of CodeGeeX's n-th extra token (1-based), id 50,256 + n."""
    return f"<|extratoken_{n}|>"


def whitespace_run_token(n_spaces: int) -> str:
    """CodeGeeX's name for the token that stands for ``n_spaces`` spaces (2..10)."""
    return extra_token(n_spaces - 2 + _FIRST_WHITESPACE_EXTRATOKEN)


def codegeex_tokenizer(folder: str | Path) -> Tokenizer:
    """The CodeGeeX-13B tokenizer from a folder with ``vocab.json`` and ``merges.txt``.

    ``added_tokens.json`` is optional (the extra tokens' names and ids follow a fixed rule) and
    checked when present.
    """
    folder = Path(folder)
    vocab_file, merges_file = folder / "vocab.json", folder / "merges.txt"
    for path in (vocab_file, merges_file):
        if not path.is_file():
            raise GeexError(
                f"{folder}: no {path.name}; expected CodeGeeX's vocab.json and merges.txt"
            )
    _check_layout(folder)

    backend = tokenizers.Tokenizer(models.BPE.from_file(str(vocab_file), str(merges_file)))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    backend.add_special_tokens([AddedToken(EOD_TOKEN, special=True, normalized=False)])
    whitespace_ids = {
        whitespace_run_token(n): EOD_ID + _FIRST_WHITESPACE_EXTRATOKEN + n - 2
        for n in WHITESPACE_RUN_LENGTHS
    }
    # Added one at a time so that each gets the next id, as in added_tokens.json.
    for n in range(1, EXTRA_TOKEN_COUNT + 1):
        name = extra_token(n)
        if name in whitespace_ids:
            spaces = " " * (n - _FIRST_WHITESPACE_EXTRATOKEN + 2)
            backend.add_tokens([AddedToken(spaces, special=False, normalized=False)])
        else:
            backend.add_special_tokens([AddedToken(name, special=True, normalized=False)])
    if backend.get_vocab_size() != VOCAB_SIZE or backend.token_to_id(" " * 10) != 50_274:
        raise GeexError(f"{folder}: the vocabulary did not come out as CodeGeeX's 50,400 ids")
    return Tokenizer(backend, kind="codegeex", unk_token=EOD_TOKEN, marker_aliases=whitespace_ids)


def _check_layout(folder: Path) -> None:
    """Refuse files that would build a tokenizer with other ids than CodeGeeX-13B's."""
    try:
        vocab = json.loads((folder / "vocab.json").read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as err:
        raise GeexError(f"{folder / 'vocab.json'}: not valid JSON ({err})") from None
    if len(vocab) != GPT2_VOCAB_SIZE or vocab.get(EOD_TOKEN) != EOD_ID:
        raise GeexError(
            f"{folder / 'vocab.json'}: expected GPT-2's vocabulary (50,257 tokens, "
            f"{EOD_TOKEN} = {EOD_ID}), found {len(vocab):,} tokens"
        )
    added_file = folder / "added_tokens.json"
    if added_file.is_file():
        added = json.loads(added_file.read_text(encoding="utf-8"))
        expected = {extra_token(n): EOD_ID + n for n in range(1, EXTRA_TOKEN_COUNT + 1)}
        if added != expected:
            raise GeexError(
                f"{added_file}: expected <|extratoken_1|>..<|extratoken_143|> as ids "
                f"50257..50399, CodeGeeX's added tokens"
            )
