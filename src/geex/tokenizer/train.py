"""Train a byte-level BPE tokenizer for code, from texts in Python or from source files.

The vocabulary, in id order:

- ``<|endoftext|>`` (id 0, end of document) and the fill-in-the-middle tokens
  ``<|fim_prefix|>``, ``<|fim_middle|>``, ``<|fim_suffix|>``, ``<|fim_pad|>`` (StarCoder's
  names), all special: never produced from plain text unless asked for;
- the 256 bytes, so that any text encodes (byte-level BPE never needs an unknown token);
- the learned merges;
- last, one token per language tag line from ``geex.languages`` (``"# language: Python\\n"``,
  newline included), so the tag that starts every training file is one id. These are plain
  added tokens: they decode to exactly their text.

Pre-tokenization is GPT-2's idea (a word keeps its leading space) reshaped for code: a line
break keeps the indentation after it ("\\n        "), and a run of punctuation keeps a line
break and indentation that follow it ("):\\n    ", ";\\n\\t\\t"), so BPE learns whole
indentation steps and line ends. With 8,192 ids, trained on 8 MB of the Python standard library
plus the even-numbered HumanEval-X tasks and measured on the odd ones (``benchmarks/tokenizer.py``),
this gave 3.27 bytes per token; GPT-2's pattern 3.05, this one without the punctuation rule 3.07.
Adding CodeGeeX-style tokens for runs of 2..16 spaces lowered it to 3.02: as added tokens they
cut every indentation off its line break.
"""

from __future__ import annotations

import glob
import re
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import tokenizers
from tokenizers import AddedToken, Regex, decoders, models, pre_tokenizers, trainers

from geex.errors import GeexError
from geex.languages import LANGUAGES, detect_language, get_language
from geex.tokenizer.tokenizer import EOD_TOKEN, FIM_TOKENS, Tokenizer

DEFAULT_VOCAB_SIZE = 8192  # the `tiny` model preset's vocabulary
SPECIAL_TOKENS = (EOD_TOKEN, *FIM_TOKENS)
BYTE_ALPHABET_SIZE = 256

# Alternatives in order: a line break with the indentation after it; a word, a number or a
# run of punctuation, each with at most one leading space, punctuation also taking a line
# break and indentation that follow; spaces before a line break or before a space-led word
# (the last space goes with the word, as in GPT-2); any other whitespace.
CODE_SPLIT_PATTERN = (
    r"[\r\n]+[^\S\r\n]*"
    r"| ?\p{L}+"
    r"| ?\p{N}+"
    r"| ?[^\s\p{L}\p{N}]+(?:[\r\n]+[^\S\r\n]*)?"
    r"|[^\S\r\n]+(?!\S)"
    r"|\s+"
)


def code_pre_tokenizer() -> pre_tokenizers.PreTokenizer:
    return pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(CODE_SPLIT_PATTERN), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )


def language_tag_tokens(languages: Iterable[str] | None = None) -> list[str]:
    """One token per tag line (with its newline), for the given language keys or all."""
    chosen = LANGUAGES.values() if languages is None else map(get_language, languages)
    return list(dict.fromkeys(language.tag + "\n" for language in chosen))


def minimum_vocab_size(n_tag_tokens: int) -> int:
    return len(SPECIAL_TOKENS) + BYTE_ALPHABET_SIZE + n_tag_tokens


def train_tokenizer(
    texts: Iterable[str],
    vocab_size: int = DEFAULT_VOCAB_SIZE,
    *,
    languages: Iterable[str] | None = None,
    min_frequency: int = 2,
    show_progress: bool = False,
    length: int | None = None,
) -> Tokenizer:
    """Train a code tokenizer of ``vocab_size`` ids (fewer if the texts run out of merges).

    ``languages`` picks which language tags get a token (keys of ``geex.languages.LANGUAGES``;
    default all); ``length`` is the number of texts, for the progress bar.
    """
    tag_tokens = language_tag_tokens(languages)
    if not isinstance(min_frequency, int) or min_frequency < 0:
        raise GeexError(f"min frequency must be an integer >= 0, got {min_frequency!r}")
    minimum = minimum_vocab_size(len(tag_tokens))
    if vocab_size < minimum:
        raise GeexError(
            f"vocab size {vocab_size} is too small: the {len(SPECIAL_TOKENS)} special tokens, "
            f"{BYTE_ALPHABET_SIZE} bytes and {len(tag_tokens)} language tags need {minimum} ids "
            f"before any merge"
        )
    backend = tokenizers.Tokenizer(models.BPE())
    backend.pre_tokenizer = code_pre_tokenizer()
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - len(tag_tokens),
        min_frequency=min_frequency,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=show_progress,
    )
    counted = _CountedTexts(texts, tag_tokens)
    backend.train_from_iterator(counted, trainer, length=length)
    if counted.characters == 0:
        raise GeexError("no training text: every input was empty")
    # Added after training so that they take the last ids (added before, they would keep ids
    # from the empty model that the trained vocabulary reuses).
    first_tag_id = backend.get_vocab_size()
    backend.add_tokens([AddedToken(tag, special=False, normalized=False) for tag in tag_tokens])
    assert [backend.token_to_id(t) for t in tag_tokens] == list(
        range(first_tag_id, first_tag_id + len(tag_tokens))
    )
    return Tokenizer(backend, kind="trained")


class _CountedTexts:
    """Feeds the trainer each text cut at the language tags, and counts the characters.

    ``tokenizers`` trains on its pre-tokenizer's pieces without first taking out added
    tokens, so without the cut the tags would be learned as merges too.
    """

    def __init__(self, texts: Iterable[str], tag_tokens: Sequence[str]) -> None:
        self.texts = texts
        self.characters = 0
        self._tags = re.compile("|".join(map(re.escape, tag_tokens))) if tag_tokens else None

    def __iter__(self) -> Iterator[list[str]]:
        for text in self.texts:
            self.characters += len(text)
            yield self._tags.split(text) if self._tags else [text]


# --- source files -----------------------------------------------------------------------


def source_files(sources: Iterable[str | Path]) -> list[Path]:
    """The files named by paths, globs and folders, in order, each once.

    A folder contributes the files under it whose language ``geex.languages`` recognises,
    skipping hidden files and folders (``.git``); a named file is always taken.
    """
    files: dict[Path, None] = {}
    for source in sources:
        source = str(source)
        paths = [Path(source)]
        if not paths[0].exists() and glob.has_magic(source):
            paths = [Path(p) for p in sorted(glob.glob(source, recursive=True))]
        if not paths or not paths[0].exists():
            raise GeexError(f"{source}: no such file or folder, and no file matches it")
        for path in paths:
            if path.is_dir():
                for file in sorted(path.rglob("*")):
                    hidden = any(part.startswith(".") for part in file.relative_to(path).parts)
                    if file.is_file() and not hidden and detect_language(file) is not None:
                        files[file] = None
            elif path.is_file():
                files[path] = None
    return list(files)


class SourceTexts:
    """The UTF-8 text of each file, skipping binary and undecodable ones (counted)."""

    def __init__(self, files: Sequence[Path]) -> None:
        self.files = list(files)
        self.read = 0
        self.skipped: list[Path] = []
        self.bytes = 0

    def __len__(self) -> int:
        return len(self.files)

    def __iter__(self) -> Iterator[str]:
        for file in self.files:
            data = file.read_bytes()
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError:
                text = None
            if text is None or "\x00" in text:
                self.skipped.append(file)
                continue
            self.read += 1
            self.bytes += len(data)
            yield text
