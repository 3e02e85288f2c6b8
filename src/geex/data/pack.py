"""Tag, tokenize and pack source files into training shards.

The last stage of the data pipeline, usable on its own: each file gets its CodeGeeX language
tag line, is tokenized, and goes to the train or validation split by a hash of its path (so
the split is stable when files are added), with a validation share per language.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from geex.data.shards import ShardWriter
from geex.languages import Language, detect_language
from geex.tokenizer import Tokenizer


@dataclass
class PackStats:
    files: dict[str, int] = field(default_factory=dict)  # per language
    tokens: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)  # per reason


def is_validation(key: str, fraction: float) -> bool:
    """A stable, uniform choice from the file's identity alone."""
    digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 < fraction


def tagged_text(language: Language, text: str) -> str:
    """The file as the model sees it: the language tag line, then the code."""
    return f"{language.tag}\n{text}"


def pack_documents(
    documents: Iterable[tuple[str, Language, str]],
    out: str | Path,
    tokenizer: Tokenizer,
    *,
    validation_fraction: float = 0.05,
    stats: PackStats | None = None,
) -> PackStats:
    """Pack ``(key, language, text)`` documents into ``out``; the tokenizer is saved beside."""
    stats = stats if stats is not None else PackStats()
    writer = ShardWriter(out, vocab_size=tokenizer.vocab_size, eod_id=tokenizer.eod_id)
    for key, language, text in documents:
        ids = tokenizer.encode(tagged_text(language, text))
        split = "validation" if is_validation(key, validation_fraction) else "train"
        writer.add(ids, language.key, split)
        stats.files[language.key] = stats.files.get(language.key, 0) + 1
        stats.tokens[language.key] = stats.tokens.get(language.key, 0) + len(ids) + 1
    tokenizer.save(out)
    writer.close()
    return stats


def read_source_files(files: Iterable[Path], stats: PackStats):
    """``(key, language, text)`` for each readable source file; the others are counted."""
    for path in files:
        language = detect_language(path)
        if language is None:
            stats.skipped["unknown language"] = stats.skipped.get("unknown language", 0) + 1
            continue
        try:
            text = path.read_bytes().decode("utf-8")
        except UnicodeDecodeError:
            stats.skipped["not UTF-8"] = stats.skipped.get("not UTF-8", 0) + 1
            continue
        except OSError:
            stats.skipped["unreadable"] = stats.skipped.get("unreadable", 0) + 1
            continue
        if "\x00" in text:
            stats.skipped["binary"] = stats.skipped.get("binary", 0) + 1
            continue
        yield str(path), language, text
