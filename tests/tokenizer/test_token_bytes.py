"""The per-id byte table sums to the decoded text's UTF-8 length, special tokens counting 0. `pytest tests/tokenizer/test_token_bytes.py`."""

from __future__ import annotations

import numpy as np
import pytest
import tokenizers
from hypothesis import given, settings
from tokenizers import decoders, models

from geex.tokenizer import load_tokenizer, train_tokenizer
from geex.tokenizer.token_bytes import token_byte_lengths
from geex.tokenizer.tokenizer import Tokenizer
from tests.conftest import shared_path
from tests.tokenizer.test_roundtrip import SETTINGS, TEXTS
from tests.train.corpus import documents

# Multi-byte characters often enough that BPE merges them (and pieces of them) into tokens.
UNICODE_CODE = 'print("héllo, wörld: 世界 🙂")  # naïve café\n'


@pytest.fixture(scope="module")
def codegeex():
    return load_tokenizer(shared_path("data", "codegeex-tokenizer"))


@pytest.fixture(scope="module")
def trained():
    texts = [text for _, text in documents(200)] + [UNICODE_CODE] * 50
    return train_tokenizer(texts, vocab_size=400, languages=["python", "c"])


def text_bytes(tokenizer: Tokenizer, ids: list[int]) -> int:
    """The UTF-8 length of the decoded text, special tokens left out."""
    special = set(tokenizer.special_tokens().values())
    return len(tokenizer.decode([i for i in ids if i not in special]).encode("utf-8"))


def test_trained_vocabulary_holds_tokens_of_multibyte_characters(trained):
    pieces = [trained.decode([i]) for i in trained.encode(UNICODE_CODE)]
    assert any(len(p) > 1 and any(ord(c) > 127 for c in p) for p in pieces)


@pytest.fixture(scope="module")
def tables(codegeex, trained):
    return [(tokenizer, token_byte_lengths(tokenizer)) for tokenizer in (codegeex, trained)]


@settings(SETTINGS, max_examples=100)
@given(text=TEXTS)
def test_table_sums_to_the_text_bytes(tables, text):
    for tokenizer, lengths in tables:
        assert int(lengths[tokenizer.encode(text)].sum()) == len(text.encode("utf-8"))
        ids = tokenizer.encode(text, allow_special=True)
        assert int(lengths[ids].sum()) == text_bytes(tokenizer, ids)


@pytest.mark.parametrize("which", ["codegeex", "trained"])
def test_special_tokens_count_no_bytes_and_added_text_tokens_their_own(which, request):
    tokenizer = request.getfixturevalue(which)
    lengths = token_byte_lengths(tokenizer)
    assert len(lengths) == tokenizer.vocab_size
    assert all(lengths[i] == 0 for i in tokenizer.special_tokens().values())
    assert (lengths > 0).sum() == tokenizer.vocab_size - len(tokenizer.special_tokens())
    tag = "# language: Python\n"
    assert lengths[tokenizer.encode(tag)].sum() == len(tag)
    if which == "codegeex":  # its added tokens for runs of spaces are the spaces themselves
        assert lengths[tokenizer.token_to_id("<|extratoken_12|>")] == 4
    else:  # a tag line is one added token
        assert tokenizer.encode(tag) == [tokenizer.language_tag_ids()["# language: Python"]]
    # The FIM markers of a training sample: 0 bytes, whatever their names' length.
    if tokenizer.fim_prefix_id is not None:
        sample = "<|fim_prefix|>a = <|fim_suffix|>\n<|fim_middle|>1"
        assert lengths[tokenizer.encode(sample, allow_special=True)].sum() == len("a = \n1")


def test_a_tokenizer_without_a_byte_level_decoder_has_no_table():
    backend = tokenizers.Tokenizer(
        models.WordPiece({"<|endoftext|>": 0, "[UNK]": 1, "code": 2, "##s": 3}, unk_token="[UNK]")
    )
    backend.decoder = decoders.WordPiece()  # "code", "##s" -> "codes": not a sum of pieces
    assert token_byte_lengths(Tokenizer(backend, kind="external")) is None


def test_table_is_int64_for_indexing_token_tensors(trained):
    assert token_byte_lengths(trained).dtype == np.int64
