"""Token healing backs up over the prompt's last pre-token and lets exactly the spellings of it
that continue into real text through. `pytest tests/tokenizer/test_healing.py`."""

from __future__ import annotations

import pytest
import tokenizers
from hypothesis import given, settings
from tokenizers import decoders, models

from geex.tokenizer import load_tokenizer, train_tokenizer
from geex.tokenizer.healing import MAX_TOKENS, heal_prompt
from geex.tokenizer.tokenizer import Tokenizer
from tests.conftest import shared_path
from tests.tokenizer.test_roundtrip import SETTINGS, TEXTS
from tests.train.corpus import documents

PYTHON_PROMPT = 'def add(a, b):\n    """Add two numbers.\n    """\n'
C_PROMPT = "int add(int a, int b) {\n"


@pytest.fixture(scope="module")
def trained():
    texts = [text for _, text in documents(300)]
    return train_tokenizer(texts, vocab_size=600, languages=["python", "c"])


@pytest.fixture(scope="module")
def codegeex():
    return load_tokenizer(shared_path("data", "codegeex-tokenizer"))


def spelled(healed, tokenizer, continuation_ids):
    """Whether a continuation's tokens pass the constraint step by step."""
    for k, token in enumerate(continuation_ids):
        allowed = healed.allowed(continuation_ids[:k])
        if allowed is not None and token not in allowed:
            return False
    return True


def test_a_prompt_ending_after_a_line_break_backs_up_over_it(trained):
    healed = heal_prompt(trained, trained.encode(C_PROMPT))
    assert healed.tail == " {\n"
    assert trained.decode(healed.ids) + healed.tail == C_PROMPT
    # Training text merges the break with the body's indentation: that token is allowed now.
    whole = trained.encode(C_PROMPT + "    return a + b;\n}\n")
    assert whole[: len(healed.ids)] == healed.ids
    assert spelled(healed, trained, whole[len(healed.ids) :])
    first = whole[len(healed.ids)]
    assert trained.decode([first]).startswith(" {\n    ")


def test_the_closing_docstring_line_is_spelled_again(trained):
    healed = heal_prompt(trained, trained.encode(PYTHON_PROMPT))
    assert healed.tail == '"""\n'
    whole = trained.encode(PYTHON_PROMPT + "    return a + b\n")
    assert whole[: len(healed.ids)] == healed.ids
    assert spelled(healed, trained, whole[len(healed.ids) :])


@settings(SETTINGS, max_examples=150)
@given(text=TEXTS)
def test_the_backed_up_ids_and_the_tail_give_the_prompt_back(trained, text):
    ids = trained.encode(text)
    healed = heal_prompt(trained, ids)
    assert trained.decode(healed.ids) + healed.tail == trained.decode(ids)
    assert len(ids) - len(healed.ids) <= MAX_TOKENS
    if healed.tail:
        assert healed.ids  # never the whole prompt: decoding needs a token to start from
        # The prompt's own spelling of the tail always passes the constraint.
        assert spelled(healed, trained, ids[len(healed.ids) :])
        assert healed.allowed(ids[len(healed.ids) :]) is None


def test_completion_cuts_the_tail_and_is_empty_until_it_is_spelled(trained):
    healed = heal_prompt(trained, trained.encode(C_PROMPT))
    assert healed.completion(" {\n    return a;") == "    return a;"
    assert healed.completion(" {") == ""
    unhealed = heal_prompt(trained, trained.encode(C_PROMPT + "<|endoftext|>", allow_special=True))
    assert unhealed.tail == "" and unhealed.completion("x") == "x"


def test_special_tokens_and_tag_lines_are_not_backed_up(trained):
    tag = trained.encode("# language: Python\n")
    assert heal_prompt(trained, tag + tag).tail == ""  # the prompt ends with a tag line
    ends_special = trained.encode("x = 1\n<|endoftext|>", allow_special=True)
    assert heal_prompt(trained, ends_special).ids == ends_special
    # Backing up stops at a tag line even when the last pre-token reaches back past it.
    healed = heal_prompt(trained, tag + trained.encode("    "))
    assert healed.ids[: len(tag)] == tag


def test_codegeex_backs_up_a_trailing_run_of_spaces_alone(codegeex):
    ids = codegeex.encode("def f(x):\n        ")
    healed = heal_prompt(codegeex, ids)
    assert healed.ids == ids[:-1]
    assert healed.tail == codegeex.decode(ids[-1:])
    continuation = codegeex.encode("def f(x):\n        return x")
    assert continuation[: len(healed.ids)] == healed.ids


def test_a_tokenizer_without_byte_level_decoding_is_left_alone():
    backend = tokenizers.Tokenizer(
        models.WordPiece({"<|endoftext|>": 0, "[UNK]": 1, "code": 2, "##s": 3}, unk_token="[UNK]")
    )
    backend.decoder = decoders.WordPiece()
    tokenizer = Tokenizer(backend, kind="external")
    assert heal_prompt(tokenizer, [2, 3]).ids == [2, 3]


def test_no_tokenizer_means_healing_off(trained):
    ids = trained.encode("def f():\n    return 1\n")
    assert heal_prompt(trained, ids).tail  # the same prompt heals with its tokenizer
    healed = heal_prompt(None, ids)
    assert (healed.ids, healed.tail) == (ids, "")
