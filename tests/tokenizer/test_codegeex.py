"""The CodeGeeX tokenizer gives CodeGeeX-13B's exact ids on real code in six languages. `pytest tests/tokenizer`.

The reference here is independent of ``tokenizers``: GPT-2's byte-level BPE written out in
Python from vocab.json and merges.txt, fed the text after CodeGeeX's whitespace rule as its
documentation states it. (``transformers`` 5 no longer ships a pure-Python GPT-2 tokenizer.)
"""

from __future__ import annotations

import gzip
import itertools
import json
import re
from pathlib import Path

import pytest

from geex.errors import GeexError
from geex.tokenizer import codegeex_tokenizer, load_tokenizer
from tests.conftest import required_module, shared_path

# The reference BPE's pattern needs the regex module, which transformers depends on.
regex = required_module("regex")

HUMANEVALX_LANGUAGES = ("python", "cpp", "java", "js", "go", "rust")


@pytest.fixture(scope="module")
def codegeex_dir() -> Path:
    return shared_path("data", "codegeex-tokenizer")


@pytest.fixture(scope="module")
def tokenizer(codegeex_dir):
    return load_tokenizer(codegeex_dir)


@pytest.fixture(scope="module")
def reference(codegeex_dir):
    return ReferenceCodeGeeX(codegeex_dir)


# --- the reference --------------------------------------------------------------------------

GPT2_PATTERN = regex.compile(
    r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
)


def gpt2_byte_alphabet() -> dict[int, str]:
    """GPT-2's byte -> character table: printable Latin-1 bytes stand for themselves."""
    printable = [*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    table, shifted = {}, 0
    for byte in range(256):
        if byte in printable:
            table[byte] = chr(byte)
        else:
            table[byte] = chr(256 + shifted)
            shifted += 1
    return table


def codegeex_whitespace_rule(text: str) -> str:
    """CodeGeeX's documented rule: n = 10 down to 2, every n spaces -> <|extratoken_{n+8}|>."""
    for n in range(10, 1, -1):
        text = text.replace(" " * n, f"<|extratoken_{n + 8}|>")
    return text


class ReferenceCodeGeeX:
    """GPT-2 byte-level BPE in plain Python, with the added tokens split out first."""

    def __init__(self, folder: Path) -> None:
        self.vocab = json.loads((folder / "vocab.json").read_text(encoding="utf-8"))
        merges = (folder / "merges.txt").read_text(encoding="utf-8").split("\n")[1:]
        self.ranks = {tuple(line.split()): rank for rank, line in enumerate(merges) if line}
        self.added = json.loads((folder / "added_tokens.json").read_text(encoding="utf-8"))
        self.added["<|endoftext|>"] = 50256
        self.added_pattern = re.compile("(" + "|".join(map(re.escape, self.added)) + ")")
        self.byte_alphabet = gpt2_byte_alphabet()
        self.cache: dict[str, list[int]] = {}

    def bpe(self, word: str) -> list[int]:
        if word not in self.cache:
            parts = list(word)
            while len(parts) > 1:
                ranked = [(self.ranks.get(pair), pair) for pair in itertools.pairwise(parts)]
                ranked = [(rank, pair) for rank, pair in ranked if rank is not None]
                if not ranked:
                    break
                first, second = min(ranked)[1]
                merged, i = [], 0
                while i < len(parts):
                    if i + 1 < len(parts) and parts[i] == first and parts[i + 1] == second:
                        merged.append(first + second)
                        i += 2
                    else:
                        merged.append(parts[i])
                        i += 1
                parts = merged
            self.cache[word] = [self.vocab[part] for part in parts]
        return self.cache[word]

    def encode(self, text: str) -> list[int]:
        ids: list[int] = []
        for i, piece in enumerate(self.added_pattern.split(codegeex_whitespace_rule(text))):
            if i % 2:
                ids.append(self.added[piece])
                continue
            for word in GPT2_PATTERN.findall(piece):
                ids += self.bpe("".join(self.byte_alphabet[b] for b in word.encode("utf-8")))
        return ids


def humanevalx_programs(language: str) -> list[str]:
    """Prompt + canonical solution of every task (Rust's prompt lacks the signature)."""
    path = shared_path("data", "humaneval-x", f"humaneval_{language}.jsonl.gz")
    with gzip.open(path, "rt", encoding="utf-8") as lines:
        tasks = [json.loads(line) for line in lines]
    declaration = (lambda t: t["declaration"]) if language == "rust" else (lambda t: "")
    return [t["prompt"] + declaration(t) + t["canonical_solution"] for t in tasks]


# --- exact ids ------------------------------------------------------------------------------

# Computed once with ReferenceCodeGeeX above, so that these tests do not only compare two
# live implementations.
EXPECTED_IDS = {
    "def add(a, b):\n    return a + b\n": [
        4299, 751, 7, 64, 11, 275, 2599, 198, 50268, 7783, 257, 1343, 275, 198,
    ],
    "x           = 1": [87, 50274, 796, 352],  # 11 spaces: ten, then a space joins "="
    " " * 23 + "y": [50274, 50274, 50267, 88],  # ten, ten, three
    "int main() {\r\n\treturn 0;\r\n}\r\n": [
        600, 1388, 3419, 1391, 201, 198, 197, 7783, 657, 26, 201, 198, 92, 201, 198,
    ],
    's = "héllo, 世界 🙂"  # ünïcode\n': [
        82, 796, 366, 71, 2634, 18798, 11, 220, 10310, 244, 45911, 234, 32485, 1, 50266, 2,
        6184, 120, 77, 26884, 8189, 198,
    ],
}  # fmt: skip


@pytest.mark.parametrize("text", list(EXPECTED_IDS))
def test_known_texts_give_the_recorded_codegeex_ids(tokenizer, text):
    assert tokenizer.encode(text) == EXPECTED_IDS[text]
    assert tokenizer.decode(EXPECTED_IDS[text]) == text


def test_reference_reproduces_the_recorded_ids(reference):
    for text, ids in EXPECTED_IDS.items():
        assert reference.encode(text) == ids


@pytest.mark.parametrize("language", HUMANEVALX_LANGUAGES)
def test_humanevalx_programs_match_the_reference(tokenizer, reference, language):
    programs = humanevalx_programs(language)
    assert tokenizer.encode_batch(programs) == [reference.encode(p) for p in programs]
    assert tokenizer.decode_batch(tokenizer.encode_batch(programs)) == programs


HAND_WRITTEN = [
    # deep indentation, every run length 1..40 at a line start and inside a line
    "".join(" " * n + f"x{n} =" + " " * n + f"{n}\n" for n in range(1, 41)),
    "class A:\n\tdef f(self):\n\t\treturn  [\t1,  2 ,   3]\n \t \t\n",  # tabs mixed with spaces
    'fn main() {\r\n    println!("{}",   x);\r\n}\r\n',  # CRLF
    "// 注释：缩进  很深\n          let ümlaut = 'ß';   // ∑ 𝔘𝔫𝔦\n",  # unicode
    "trailing   \n    \n\n\n          \n",  # whitespace-only lines
    " leading space and a final space ",
    "\u00a0\u3000 non-ASCII spaces are not runs of ' '\u2003\u2003",
]


@pytest.mark.parametrize("text", HAND_WRITTEN)
def test_hand_written_code_matches_the_reference(tokenizer, reference, text):
    assert tokenizer.encode(text) == reference.encode(text)
    assert tokenizer.decode(tokenizer.encode(text)) == text


# --- the whitespace rule --------------------------------------------------------------------


@pytest.mark.parametrize("n", range(1, 35))
def test_a_run_of_spaces_is_cut_into_tens_from_the_left(tokenizer, n):
    tens, rest = divmod(n, 10)
    runs = [50274] * tens + ([50256 + rest + 8] if rest >= 2 else [])
    # A lone space left over stays a space and joins the next word, as in GPT-2 ("Ġb").
    last = [275] if rest == 1 else [65]
    assert tokenizer.encode("a" + " " * n + "b") == [64, *runs, *last]


def test_whitespace_tokens_answer_to_their_codegeex_names(tokenizer):
    for n in range(2, 11):
        assert tokenizer.token_to_id(f"<|extratoken_{n + 8}|>") == 50256 + n + 8
        assert tokenizer.decode([50256 + n + 8]) == " " * n
    assert tokenizer.token_to_id("<|extratoken_1|>") == 50257
    assert tokenizer.token_to_id("<|extratoken_143|>") == 50399


def test_vocabulary_and_special_ids(tokenizer):
    assert tokenizer.kind == "codegeex"
    assert tokenizer.vocab_size == len(tokenizer) == 50_400
    assert tokenizer.eod_id == tokenizer.pad_id == 50256
    assert tokenizer.fim_prefix_id is tokenizer.fim_middle_id is tokenizer.fim_suffix_id is None
    assert tokenizer.language_tag_ids() == {}


# --- literal special-token text -------------------------------------------------------------

LITERAL = "eod = '<|endoftext|>'\nindent = '<|extratoken_12|>'  # 4 spaces\n"


def test_literal_markers_are_plain_text_by_default(tokenizer):
    ids = tokenizer.encode(LITERAL)
    assert 50256 not in ids and 50268 not in ids
    assert tokenizer.decode(ids) == LITERAL
    assert tokenizer.encode_batch([LITERAL]) == [ids]


def test_allow_special_matches_markers_like_codegeex(tokenizer, reference):
    ids = tokenizer.encode(LITERAL, allow_special=True)
    assert ids == reference.encode(LITERAL)
    assert 50256 in ids and 50268 in ids
    assert tokenizer.encode_batch([LITERAL, "x"], allow_special=True) == [ids, [87]]
    # Matching names is CodeGeeX's behaviour, and it is lossy: the name comes back as spaces.
    assert tokenizer.decode(ids) == LITERAL.replace("<|extratoken_12|>", "    ")


def test_allow_special_next_to_space_runs_keeps_both(tokenizer, reference):
    text = "  <|extratoken_12|>   <|extratoken_12|><|endoftext|>  "
    assert tokenizer.encode(text, allow_special=True) == reference.encode(text)


# --- refusing other files -------------------------------------------------------------------


def test_a_vocab_of_another_size_is_refused(tmp_path, codegeex_dir):
    (tmp_path / "vocab.json").write_text(json.dumps({"a": 0, "<|endoftext|>": 1}))
    (tmp_path / "merges.txt").write_text("#version: 0.2\n")
    with pytest.raises(GeexError, match="GPT-2's vocabulary"):
        codegeex_tokenizer(tmp_path)


def test_added_tokens_with_other_ids_are_refused(tmp_path, codegeex_dir):
    for name in ("vocab.json", "merges.txt"):
        (tmp_path / name).write_bytes((codegeex_dir / name).read_bytes())
    (tmp_path / "added_tokens.json").write_text(json.dumps({"<|extratoken_1|>": 50300}))
    with pytest.raises(GeexError, match="added tokens"):
        codegeex_tokenizer(tmp_path)
    (tmp_path / "added_tokens.json").unlink()  # optional: the names and ids follow a rule
    assert codegeex_tokenizer(tmp_path).encode("  x") == [50266, 87]
