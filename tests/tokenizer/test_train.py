"""train_tokenizer lays out ids as documented, keeps code whitespace together, and refuses bad input. `pytest tests/tokenizer`."""

from __future__ import annotations

from pathlib import Path

import pytest

from geex.errors import GeexError
from geex.languages import LANGUAGES
from geex.tokenizer import train_tokenizer
from geex.tokenizer.train import SourceTexts, code_pre_tokenizer, source_files

REPO = Path(__file__).resolve().parents[2]
VOCAB_SIZE = 1024


def geex_sources() -> list[str]:
    """A small real corpus that is always there: this package's own code."""
    return [p.read_text(encoding="utf-8") for p in sorted((REPO / "src" / "geex").rglob("*.py"))]


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(geex_sources(), vocab_size=VOCAB_SIZE)


def test_ids_are_special_tokens_then_bytes_and_merges_then_language_tags(tokenizer):
    assert tokenizer.kind == "trained"
    assert tokenizer.vocab_size == VOCAB_SIZE
    assert (tokenizer.eod_id, tokenizer.pad_id) == (0, 0)
    fim = (tokenizer.fim_prefix_id, tokenizer.fim_middle_id, tokenizer.fim_suffix_id)
    assert fim == (1, 2, 3) and tokenizer.fim_pad_id == 4
    assert tokenizer.special_tokens() == {
        "<|endoftext|>": 0,
        "<|fim_prefix|>": 1,
        "<|fim_middle|>": 2,
        "<|fim_suffix|>": 3,
        "<|fim_pad|>": 4,
    }
    tags = tokenizer.language_tag_ids()
    assert set(tags) == {language.tag for language in LANGUAGES.values()}
    assert sorted(tags.values()) == list(range(VOCAB_SIZE - len(LANGUAGES), VOCAB_SIZE))


@pytest.mark.parametrize("language", LANGUAGES.values(), ids=lambda language: language.key)
def test_a_tag_line_starting_a_file_is_one_id(tokenizer, language):
    code = "x = f(1)\n    return x\n"
    ids = tokenizer.encode(language.tag + "\n" + code)
    assert ids == [tokenizer.language_tag_ids()[language.tag], *tokenizer.encode(code)]
    assert tokenizer.decode(ids) == language.tag + "\n" + code


def test_a_tag_without_its_line_break_is_plain_text(tokenizer):
    tag_ids = set(tokenizer.language_tag_ids().values())
    assert not tag_ids & set(tokenizer.encode("# language: Python is fun"))


def test_pre_tokenizer_keeps_a_line_break_with_its_indentation():
    pieces = [p for p, _ in code_pre_tokenizer().pre_tokenize_str("if x:\n        return  y\n")]
    # Byte-level spelling: "Ġ" is a space, "Ċ" a line break. The last space of a run goes
    # with the next word, as in GPT-2.
    assert pieces == ["if", "Ġx", ":Ċ" + "Ġ" * 8, "return", "Ġ", "Ġy", "Ċ"]
    tabs = [p for p, _ in code_pre_tokenizer().pre_tokenize_str("a\n\t\tb")]
    assert tabs == ["a", "Ċĉĉ", "b"]


def test_indentation_steps_become_single_tokens(tokenizer):
    for text in ("\n    ", "\n        ", ":\n    "):
        assert len(tokenizer.encode(text)) == 1, text


def test_literal_special_tokens_are_text_unless_allowed(tokenizer):
    text = "split on '<|endoftext|>' and '<|fim_middle|>'"
    assert not {0, 2} & set(tokenizer.encode(text))
    assert {0, 2} <= set(tokenizer.encode(text, allow_special=True))
    assert tokenizer.decode(tokenizer.encode(text)) == text


def test_training_is_deterministic(tokenizer):
    again = train_tokenizer(geex_sources(), vocab_size=VOCAB_SIZE)
    assert again.backend.to_str() == tokenizer.backend.to_str()


def test_language_subset_gets_only_those_tags():
    tokenizer = train_tokenizer(geex_sources(), vocab_size=512, languages=["python", "C++"])
    assert set(tokenizer.language_tag_ids()) == {"# language: Python", "// language: C++"}
    assert tokenizer.vocab_size == 512


def test_a_small_corpus_gives_fewer_ids_and_still_round_trips():
    tokenizer = train_tokenizer(["ab ab ab"], vocab_size=8192)
    assert tokenizer.vocab_size < 8192
    text = "any text at all: ünïcode, 🙂, \t\r\n"
    assert tokenizer.decode(tokenizer.encode(text)) == text


def test_too_small_a_vocabulary_is_refused():
    with pytest.raises(GeexError, match="too small"):
        train_tokenizer(["x = 1"], vocab_size=300)


def test_no_text_is_refused():
    with pytest.raises(GeexError, match="no training text"):
        train_tokenizer([])
    with pytest.raises(GeexError, match="no training text"):
        train_tokenizer(["", ""])


def test_unknown_language_is_refused():
    with pytest.raises(GeexError, match="unknown language"):
        train_tokenizer(["x"], languages=["klingon"])


# --- source files ---------------------------------------------------------------------------


@pytest.fixture
def tree(tmp_path):
    files = {
        "proj/main.py": "print('hi')\n",
        "proj/lib/util.rs": "fn main() {}\n",
        "proj/.git/hooks/pre-commit.py": "hidden\n",
        "proj/data.bin": "not code\n",
        "proj/README": "no extension\n",
        "proj/blob.py": b"\x00\x01binary",
        "proj/latin1.c": "caf\xe9".encode("latin-1"),
    }
    for name, content in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return tmp_path


def test_a_folder_gives_its_source_files_of_known_languages(tree):
    found = source_files([tree / "proj"])
    names = [p.relative_to(tree / "proj").as_posix() for p in found]
    assert names == ["blob.py", "latin1.c", "lib/util.rs", "main.py"]


def test_globs_and_named_files_are_taken_as_given(tree):
    found = source_files([str(tree / "proj" / "**" / "*.rs"), tree / "proj" / "README"])
    assert found == [tree / "proj" / "lib" / "util.rs", tree / "proj" / "README"]
    assert source_files([tree / "proj" / "main.py", tree / "proj"])[0] == tree / "proj" / "main.py"


def test_a_missing_source_is_refused(tree):
    with pytest.raises(GeexError, match="no such file"):
        source_files([tree / "nowhere"])
    with pytest.raises(GeexError, match="no file matches"):
        source_files([str(tree / "*.java")])


def test_binary_and_non_utf8_files_are_skipped(tree):
    texts = SourceTexts(source_files([tree / "proj"]))
    assert list(texts) == ["fn main() {}\n", "print('hi')\n"]
    assert sorted(p.name for p in texts.skipped) == ["blob.py", "latin1.c"]
    assert texts.read == 2 and texts.bytes == len("fn main() {}\n") + len("print('hi')\n")
