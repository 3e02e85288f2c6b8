"""FIM styles: each built and detected from a vocabulary, and prompts truncated to a budget.

Run: pytest tests/serve/test_fim.py -q
"""

from __future__ import annotations

import pytest

from geex.errors import GeexError
from geex.tokenizer.fim import (
    FIM_STYLES,
    FimTokenIds,
    build_fim_ids,
    detect_fim_style,
    encode_without_leading_space,
    get_fim_style,
    suffix_budget,
)

# The marker and end tokens of each family's published tokenizer, plus a few ordinary tokens.
VOCABS = {
    "geex": ["<|endoftext|>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>"],
    "starcoder": ["<|endoftext|>", "<fim_prefix>", "<fim_middle>", "<fim_suffix>", "<fim_pad>"],
    "santacoder": ["<|endoftext|>", "<fim-prefix>", "<fim-middle>", "<fim-suffix>", "<fim-pad>"],
    "codellama": ["<s>", "</s>", "▁<PRE>", "▁<MID>", "▁<SUF>", "▁<EOT>"],
    "deepseek": [
        "<｜begin▁of▁sentence｜>",
        "<｜end▁of▁sentence｜>",
        "<｜fim▁hole｜>",
        "<｜fim▁begin｜>",
        "<｜fim▁end｜>",
    ],
    "qwen": [
        "<|endoftext|>",
        "<|im_start|>",
        "<|im_end|>",
        "<|fim_prefix|>",
        "<|fim_middle|>",
        "<|fim_suffix|>",
        "<|fim_pad|>",
        "<|repo_name|>",
        "<|file_sep|>",
    ],
    "codegemma": [
        "<bos>",
        "<eos>",
        "<|fim_prefix|>",
        "<|fim_middle|>",
        "<|fim_suffix|>",
        "<|file_separator|>",
    ],
}


def vocab_of(tokens: list[str]) -> dict[str, int]:
    return {t: i for i, t in enumerate(["a", "b", "c", *tokens])}


@pytest.mark.parametrize("name", sorted(VOCABS))
def test_each_style_is_detected_from_its_vocabulary(name):
    assert detect_fim_style(vocab_of(VOCABS[name])) is FIM_STYLES[name]
    assert detect_fim_style(set(VOCABS[name])) is FIM_STYLES[name]


@pytest.mark.parametrize("name", sorted(VOCABS))
def test_each_style_builds_prefix_suffix_middle_in_order(name):
    vocab = vocab_of(VOCABS[name])
    ids = FIM_STYLES[name].token_ids(vocab)
    prompt = build_fim_ids([100, 101], [200], ids)
    assert prompt == [ids.prefix, 100, 101, ids.suffix, 200, ids.middle]
    assert ids.end and ids.end <= set(vocab.values())


def test_published_spellings_are_the_ones_used():
    deepseek = FIM_STYLES["deepseek"].token_ids(vocab_of(VOCABS["deepseek"]))
    vocab = vocab_of(VOCABS["deepseek"])
    assert (deepseek.prefix, deepseek.suffix, deepseek.middle) == (
        vocab["<｜fim▁begin｜>"],
        vocab["<｜fim▁hole｜>"],
        vocab["<｜fim▁end｜>"],
    )
    assert deepseek.end == {vocab["<｜end▁of▁sentence｜>"]}
    # Code Llama is spelled without the SentencePiece space in some conversions.
    plain = vocab_of(["<PRE>", "<SUF>", "<MID>", "<EOT>"])
    assert detect_fim_style(plain) is FIM_STYLES["codellama"]
    assert FIM_STYLES["codellama"].token_ids(plain).end == {plain["<EOT>"]}
    assert not FIM_STYLES["codellama"].suffix_leading_space


def test_gemma_end_token_and_qwen_pad_end_an_infill():
    gemma = vocab_of(VOCABS["codegemma"])
    assert gemma["<|file_separator|>"] in FIM_STYLES["codegemma"].token_ids(gemma).end
    qwen = vocab_of(VOCABS["qwen"])
    assert {qwen["<|fim_pad|>"], qwen["<|endoftext|>"]} <= FIM_STYLES["qwen"].token_ids(qwen).end


def test_no_fim_tokens_detects_nothing_and_prefix_only_is_never_detected():
    assert detect_fim_style(vocab_of(["<|endoftext|>", "<|im_start|>"])) is None
    # Two markers of three is not a style.
    assert detect_fim_style(vocab_of(["<fim_prefix>", "<fim_suffix>"])) is None


def test_a_hint_chooses_among_styles_sharing_tokens():
    geex_vocab = vocab_of(VOCABS["geex"])
    assert detect_fim_style(geex_vocab, kind_hint="qwen2") is FIM_STYLES["qwen"]
    assert detect_fim_style(geex_vocab, kind_hint="gemma") is FIM_STYLES["codegemma"]
    # A hint whose tokens are missing is ignored.
    assert (
        detect_fim_style(vocab_of(VOCABS["starcoder"]), kind_hint="qwen2")
        is FIM_STYLES["starcoder"]
    )


def test_unknown_style_name_lists_the_known():
    with pytest.raises(GeexError, match="codellama"):
        get_fim_style("llama-fim")


MARKERS = FimTokenIds(prefix=1, suffix=2, middle=3, end=frozenset({0}))
PREFIX = list(range(100, 200))  # 100 tokens
SUFFIX = list(range(300, 400))


def test_both_long_suffix_keeps_a_quarter_and_budget_is_kept_exactly():
    prompt = build_fim_ids(PREFIX, SUFFIX, MARKERS, max_tokens=43)  # room 40
    assert len(prompt) == 43
    kept_prefix = prompt[1 : prompt.index(2)]
    kept_suffix = prompt[prompt.index(2) + 1 : -1]
    assert kept_suffix == SUFFIX[:10]  # from the right: the text next to the cursor stays
    assert kept_prefix == PREFIX[-30:]  # from the left


def test_short_prefix_gives_its_share_to_the_suffix_and_vice_versa():
    prompt = build_fim_ids(PREFIX[:5], SUFFIX, MARKERS, max_tokens=43)
    assert len(prompt) == 43 and prompt[1:6] == PREFIX[:5] and prompt[7:-1] == SUFFIX[:35]
    prompt = build_fim_ids(PREFIX, SUFFIX[:3], MARKERS, max_tokens=43)
    assert len(prompt) == 43 and prompt[-5:-1] == [2, *SUFFIX[:3]] and prompt[1] == PREFIX[-37]


def test_prompt_under_the_budget_is_whole():
    prompt = build_fim_ids(PREFIX[:4], SUFFIX[:4], MARKERS, leading_ids=[9], max_tokens=1000)
    assert prompt == [9, 1, *PREFIX[:4], 2, *SUFFIX[:4], 3]


def test_leading_ids_count_against_the_budget():
    prompt = build_fim_ids(PREFIX, SUFFIX, MARKERS, leading_ids=[9], max_tokens=44)
    assert len(prompt) == 44 and prompt[:2] == [9, 1]


def test_suffix_first_order():
    assert build_fim_ids([10], [20], MARKERS, order="spm") == [1, 2, 20, 3, 10]
    with pytest.raises(GeexError, match="psm or spm"):
        build_fim_ids([10], [20], MARKERS, order="pms")


def test_prefix_only_drops_the_suffix_and_cuts_from_the_left():
    ids = get_fim_style("prefix-only").token_ids({})
    assert build_fim_ids(PREFIX, SUFFIX, ids, max_tokens=10) == PREFIX[-10:]
    assert build_fim_ids([1, 2], SUFFIX, ids) == [1, 2]


def test_a_budget_with_no_room_is_refused():
    with pytest.raises(GeexError, match="no room"):
        build_fim_ids(PREFIX, SUFFIX, MARKERS, max_tokens=3)


@pytest.mark.parametrize(
    ("prefix", "suffix", "budget", "want"),
    [(100, 100, 40, 10), (5, 100, 40, 35), (100, 3, 40, 3), (10, 10, 40, 10), (0, 0, 0, 0)],
)
def test_suffix_budget(prefix, suffix, budget, want):
    assert suffix_budget(prefix, suffix, budget) == want


def test_encode_without_leading_space_drops_a_sentencepiece_dummy_prefix():
    # A SentencePiece-like encoder: "▁" starts the text, words are characters.
    def encode(text: str) -> list[int]:
        return [ord("▁"), *map(ord, text)]

    assert encode_without_leading_space(encode, "ab") == [ord("a"), ord("b")]

    def merging(text: str) -> list[int]:  # merges the anchor with what follows: plain encoding
        return [len(text)]

    assert encode_without_leading_space(merging, "ab") == [2]
