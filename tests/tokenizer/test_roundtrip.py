"""decode(encode(text)) == text for any text, and CodeGeeX's own pipeline agrees on it. `pytest tests/tokenizer`."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from geex.tokenizer import load_tokenizer, train_tokenizer
from tests.conftest import required_module, shared_path

REPO = Path(__file__).resolve().parents[2]

# Pieces that stress the whitespace rule, the pre-tokenizers and the special-token handling;
# any other text comes from st.text over every character UTF-8 can carry (no lone surrogates).
TRICKY_PIECES = [
    " ", "  ", " " * 9, " " * 10, " " * 11, " " * 37, "\t", "\t\t", "\n", "\r\n", "\r",
    "\n    ", "\n\t", "):\n        ", "\u00a0", "\u3000", "\u2003", "\x0b", "\x0c", "\x85",
    "\u2028", "\x00", "\x7f", "\ufeff", "Ġ", "Ċ", "é", "e\u0301", "世界", "🙂", "'s", "x1",
    "<|endoftext|>", "<|extratoken_12|>", "<|extratoken_1|>", "<|extratoken_143|>",
    "<|fim_prefix|>", "<|fim_pad|>", "<|", "|>", "# language: Python\n", "// language: C++\n",
    "# language: Python",
]  # fmt: skip
TEXTS = st.lists(
    st.one_of(st.text(st.characters(codec="utf-8")), st.sampled_from(TRICKY_PIECES)),
    max_size=24,
).map("".join)
SETTINGS = settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.fixture(scope="module")
def codegeex_dir():
    return shared_path("data", "codegeex-tokenizer")


@pytest.fixture(scope="module")
def codegeex(codegeex_dir):
    return load_tokenizer(codegeex_dir)


@pytest.fixture(scope="module")
def trained():
    sources = sorted((REPO / "src" / "geex").rglob("*.py"))
    return train_tokenizer((p.read_text(encoding="utf-8") for p in sources), vocab_size=1024)


@pytest.fixture(scope="module")
def codegeex_pipeline(codegeex_dir):
    """CodeGeeX's own code path: Hugging Face's GPT-2 tokenizer from the same files, fed the
    text after its whitespace rewrite (THUDM/CodeGeeX codegeex/tokenizer/tokenizer.py)."""
    transformers = required_module("transformers")
    hf = transformers.AutoTokenizer.from_pretrained(str(codegeex_dir))

    def encode(text: str) -> list[int]:
        for n in range(10, 1, -1):
            text = text.replace(" " * n, f"<|extratoken_{n + 8}|>")
        return hf(text, add_special_tokens=False)["input_ids"]

    return encode


@SETTINGS
@given(text=TEXTS)
def test_codegeex_round_trip_is_exact(codegeex, text):
    assert codegeex.decode(codegeex.encode(text)) == text


@SETTINGS
@given(text=TEXTS)
def test_trained_round_trip_is_exact_with_and_without_special_tokens(trained, text):
    assert trained.decode(trained.encode(text)) == text
    # Its special tokens decode to their own names, so matching them loses nothing either.
    assert trained.decode(trained.encode(text, allow_special=True)) == text


@SETTINGS
@given(text=TEXTS)
def test_codegeex_allow_special_equals_codegeex_pipeline(codegeex, codegeex_pipeline, text):
    assert codegeex.encode(text, allow_special=True) == codegeex_pipeline(text)


@SETTINGS
@given(text=TEXTS)
def test_codegeex_default_equals_codegeex_pipeline_without_markers(
    codegeex, codegeex_pipeline, text
):
    text = text.replace("<|", "<")  # no special-token names: the two behaviours coincide
    assert codegeex.encode(text) == codegeex_pipeline(text)


@settings(SETTINGS, max_examples=100)
@given(texts=st.lists(TEXTS, max_size=8))
def test_batch_equals_one_at_a_time(codegeex, trained, texts):
    for tokenizer in (codegeex, trained):
        for allow_special in (False, True):
            batch = tokenizer.encode_batch(texts, allow_special=allow_special)
            assert batch == [tokenizer.encode(t, allow_special=allow_special) for t in texts]
        assert tokenizer.decode_batch(tokenizer.encode_batch(texts)) == texts
