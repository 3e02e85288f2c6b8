"""Packed token shards: what ``geex data`` writes and ``geex train`` reads.

A dataset folder::

    dataset.json         the manifest (below); written last, so a folder without it is unfinished
    tokenizer.json       the tokenizer the ids come from (when the writer was given one)
    train-00000.bin      token ids, little-endian uint16 (uint32 when the vocabulary needs it);
                         every document is followed by the end-of-document id
    train-00000.idx.npy  one row per document: offset (uint64, in tokens, into the .bin),
                         length (uint32, tokens including the end-of-document id),
                         language (uint16, an index into the manifest's "languages")
    validation-00000.*   the same for the validation split

Several writers may fill one folder at once (the tasks of ``geex data``): each is given a
``shard_prefix`` (``train-00003-00000.bin`` is task 3's first train shard), closes without a
manifest and returns its part; :func:`write_manifest` then lists every part's shards, in the
order given, in the one ``dataset.json``.

``dataset.json``::

    {"format": "geex-shards", "format_version": 1, "token_dtype": "uint16",
     "vocab_size": 8192, "eod_id": 0, "languages": ["python", "cpp", ...],
     "splits": {"train": {"shards": ["train-00000"], "documents": 812, "tokens": 1048576,
                          "checksums": {"train-00000": "<blake2b-128 of the .bin>"}},
                "validation": {...}}}

A reader checks every shard's size against its index and the split's counts; it checks the
checksums too when the split is small enough for that to cost little
(:data:`CHECKSUM_BYTES_LIMIT`). Manifests written before the checksums existed have none.

The .bin files are read with ``numpy.memmap``: a reader touches only the pages it needs, so
terabyte datasets train from disk and every data-parallel rank opens the same files.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from geex.atomic import atomic_write, atomic_write_bytes, atomic_write_text
from geex.errors import GeexError

FORMAT = "geex-shards"
FORMAT_VERSION = 1
MANIFEST = "dataset.json"
INDEX_DTYPE = np.dtype([("offset", "<u8"), ("length", "<u4"), ("language", "<u2")])
DEFAULT_SHARD_TOKENS = 256 * 2**20  # 512 MiB of uint16 per file
# Splits up to this size are checksummed whenever they are opened: about a second of hashing.
CHECKSUM_BYTES_LIMIT = 2**30


def shard_checksum(tokens: np.ndarray) -> str:
    """The digest the manifest keeps of a shard: blake2b-128 of its bytes as stored."""
    return hashlib.blake2b(memoryview(np.ascontiguousarray(tokens)), digest_size=16).hexdigest()


def token_dtype(vocab_size: int) -> np.dtype:
    """uint16 while every id fits (GPT-2's 50,400 ids do), uint32 beyond."""
    return np.dtype("<u2") if vocab_size <= 2**16 else np.dtype("<u4")


@dataclass
class _SplitWriter:
    name: str
    shards: list[str] = field(default_factory=list)
    documents: int = 0
    tokens: int = 0
    buffer: list[np.ndarray] = field(default_factory=list)
    index: list[tuple[int, int, int]] = field(default_factory=list)
    buffered_tokens: int = 0
    checksums: dict[str, str] = field(default_factory=dict)


class ShardWriter:
    """Appends tokenized documents to a dataset folder, shard by shard.

    Shard files are written under temporary names and renamed when complete; the manifest is
    written by :meth:`close`, so an interrupted writer never leaves a dataset that looks whole.
    """

    def __init__(
        self,
        folder: str | os.PathLike,
        *,
        vocab_size: int,
        eod_id: int,
        languages: Iterable[str] = (),
        shard_tokens: int = DEFAULT_SHARD_TOKENS,
        shard_prefix: str | None = None,
    ):
        self.folder = Path(folder)
        self.shard_prefix = shard_prefix
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / MANIFEST).unlink(missing_ok=True)
        self.vocab_size, self.eod_id = vocab_size, eod_id
        self.dtype = token_dtype(vocab_size)
        self.languages = list(languages)
        self.shard_tokens = shard_tokens
        self._splits: dict[str, _SplitWriter] = {}

    def add(self, tokens: Iterable[int] | np.ndarray, language: str, split: str = "train") -> None:
        """One document's token ids (without the end-of-document id: it is added here)."""
        ids = np.asarray(tokens, dtype=np.int64)
        if ids.size and (ids.min() < 0 or ids.max() >= self.vocab_size):
            raise GeexError(
                f"token ids must be in [0, {self.vocab_size}); got {ids.min()}..{ids.max()}"
            )
        if language not in self.languages:
            self.languages.append(language)
        writer = self._splits.setdefault(split, _SplitWriter(split))
        doc = np.append(ids, self.eod_id).astype(self.dtype)
        writer.index.append((writer.buffered_tokens, doc.size, self.languages.index(language)))
        writer.buffer.append(doc)
        writer.buffered_tokens += doc.size
        writer.documents += 1
        writer.tokens += doc.size
        if writer.buffered_tokens >= self.shard_tokens:
            self._flush(writer)

    def _flush(self, writer: _SplitWriter) -> None:
        if not writer.buffer:
            return
        prefix = f"{writer.name}-{self.shard_prefix}" if self.shard_prefix else writer.name
        name = f"{prefix}-{len(writer.shards):05d}"
        index = np.array(writer.index, dtype=INDEX_DTYPE)
        tokens = np.concatenate(writer.buffer)
        atomic_write(self.folder / f"{name}.bin", lambda tmp: _write_array(tmp, tokens))
        writer.checksums[name] = shard_checksum(tokens)
        atomic_write_bytes(self.folder / f"{name}.idx.npy", _npy_bytes(index))
        writer.shards.append(name)
        writer.buffer, writer.index, writer.buffered_tokens = [], [], 0

    def close(self, extra: dict | None = None) -> Path:
        """Flush the last shards and write the manifest; returns the folder."""
        write_manifest(
            self.folder,
            [self.close_part()],
            vocab_size=self.vocab_size,
            eod_id=self.eod_id,
            languages=self.languages,
            extra=extra,
        )
        return self.folder

    def close_part(self) -> dict:
        """Flush the last shards without a manifest: this writer's part, for :func:`write_manifest`."""
        for writer in self._splits.values():
            self._flush(writer)
        return {
            "token_dtype": self.dtype.name,
            "languages": self.languages,
            "splits": {
                w.name: {
                    "shards": w.shards,
                    "documents": w.documents,
                    "tokens": w.tokens,
                    "checksums": w.checksums,
                }
                for w in self._splits.values()
            },
        }


def write_manifest(
    folder: str | os.PathLike,
    parts: Iterable[dict],
    *,
    vocab_size: int,
    eod_id: int,
    languages: Iterable[str],
    extra: dict | None = None,
) -> Path:
    """``dataset.json`` for the shards of ``parts`` (from :meth:`ShardWriter.close_part`), in order.

    Every part must have indexed its documents' languages by the same ``languages`` list.
    """
    languages = list(languages)
    splits: dict[str, dict] = {}
    for part in parts:
        if part["languages"] != languages[: len(part["languages"])]:
            raise GeexError("shard writers of one dataset must share one language list")
        for name, split in part["splits"].items():
            merged = splits.setdefault(name, {"shards": [], "documents": 0, "tokens": 0})
            merged["shards"] += split["shards"]
            merged["documents"] += split["documents"]
            merged["tokens"] += split["tokens"]
            merged.setdefault("checksums", {}).update(split.get("checksums", {}))
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "token_dtype": token_dtype(vocab_size).name,
        "vocab_size": vocab_size,
        "eod_id": eod_id,
        "languages": languages,
        "splits": splits,
        **(extra or {}),
    }
    path = Path(folder) / MANIFEST
    atomic_write_text(path, json.dumps(manifest, indent=2) + "\n")
    return path


def _write_array(path: str, array: np.ndarray) -> None:
    """The array's bytes, as ``array.tofile`` writes them but through a Python file, whose
    OSError keeps its errno (``tofile`` reports a full disk as "N requested and M written")."""
    with open(path, "wb") as file:
        file.write(memoryview(np.ascontiguousarray(array)).cast("B"))


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


class TokenShards:
    """One split of a dataset folder as a single stream of tokens, memory-mapped.

    Opening it checks every shard against its index and the manifest's counts (sizes only:
    cheap at any scale), so a truncated or replaced shard is refused instead of trained on;
    :meth:`read` refuses token ids beyond the manifest's vocabulary.
    """

    def __init__(self, folder: str | os.PathLike, split: str = "train"):
        self.folder = Path(folder)
        self.manifest = read_manifest(self.folder)
        splits = self.manifest["splits"]
        if split not in splits:
            raise GeexError(
                f"{self.folder} has no '{split}' split (it has: {', '.join(splits) or 'none'})"
            )
        dtype = np.dtype(self.manifest["token_dtype"])
        self.languages: list[str] = self.manifest["languages"]
        self.eod_id: int = self.manifest["eod_id"]
        self.vocab_size: int = self.manifest["vocab_size"]
        self.shard_names: list[str] = list(splits[split]["shards"])
        self._tokens, self._starts, documents = [], [0], []
        for name in self.shard_names:
            path = self.folder / f"{name}.bin"
            try:
                tokens = np.memmap(path, dtype=dtype, mode="r")
                index = np.load(self.folder / f"{name}.idx.npy")
            except (OSError, ValueError) as err:
                raise GeexError(f"cannot read shard {name} of {self.folder}: {err}") from None
            self._check_shard(name, tokens, index)
            index = index.copy()
            index["offset"] += self._starts[-1]
            documents.append(index)
            self._tokens.append(tokens)
            self._starts.append(self._starts[-1] + tokens.size)
        self.documents = np.concatenate(documents) if documents else np.zeros(0, INDEX_DTYPE)
        self._check_counts(split, splits[split])
        if len(self) * dtype.itemsize <= CHECKSUM_BYTES_LIMIT:
            self._check_checksums(splits[split].get("checksums") or {})

    def _check_shard(self, name: str, tokens: np.ndarray, index: np.ndarray) -> None:
        """The .bin holds exactly the documents its index lists, end to end."""
        if index.dtype != INDEX_DTYPE:
            raise GeexError(
                f"shard {name} of {self.folder}: {name}.idx.npy is not a shard index "
                f"(dtype {index.dtype}); {_REBUILD}"
            )
        listed = int(index["length"].sum(dtype=np.uint64))
        if tokens.size != listed:
            raise GeexError(
                f"shard {name} of {self.folder} holds {tokens.size:,} tokens but its index "
                f"lists {listed:,}: the file is truncated or damaged; {_REBUILD}"
            )

    def _check_counts(self, split: str, counts: dict) -> None:
        """The shards together hold the tokens and documents the manifest counted."""
        for what, found in (("tokens", len(self)), ("documents", len(self.documents))):
            expected = counts.get(what)
            if isinstance(expected, int) and expected != found:
                raise GeexError(
                    f"the '{split}' split of {self.folder} holds {found:,} {what} but "
                    f"{MANIFEST} counts {expected:,}: a shard is missing, truncated or from "
                    f"another run; {_REBUILD}"
                )

    def _check_checksums(self, checksums: dict) -> None:
        """Each shard the manifest has a checksum of holds the bytes it was written with."""
        for name, tokens in zip(self.shard_names, self._tokens, strict=True):
            expected = checksums.get(name)
            if expected is not None and shard_checksum(tokens) != expected:
                raise GeexError(
                    f"shard {name} of {self.folder} does not match its checksum in {MANIFEST}: "
                    f"the file was changed or damaged after `geex data` wrote it; {_REBUILD}"
                )

    def shard_of(self, position: int) -> str:
        """The name of the shard holding token ``position`` of the stream."""
        return self.shard_names[int(np.searchsorted(self._starts, position, side="right")) - 1]

    def __len__(self) -> int:
        return self._starts[-1]

    def read(self, start: int, length: int) -> np.ndarray:
        """Tokens ``[start, start + length)`` of the stream, across shard boundaries, as int64."""
        if start < 0 or start + length > len(self):
            raise IndexError(f"tokens [{start}, {start + length}) outside [0, {len(self)})")
        out = np.empty(length, dtype=np.int64)
        filled = 0
        shard = int(np.searchsorted(self._starts, start, side="right")) - 1
        while filled < length:
            local = start + filled - self._starts[shard]
            take = min(length - filled, self._tokens[shard].size - local)
            out[filled : filled + take] = self._tokens[shard][local : local + take]
            filled += take
            shard += 1
        if out.size and out.max() >= self.vocab_size:
            # Caught here, the id names its shard; past here it is an IndexError deep in the
            # embedding (or, below the padded vocabulary, an untrained row read in silence).
            bad = start + int(np.argmax(out >= self.vocab_size))
            raise GeexError(
                f"shard {self.shard_of(bad)} of {self.folder} holds token id "
                f"{int(out.max())} (at token {bad:,} of the stream), beyond the vocabulary of "
                f"{self.vocab_size:,} in {MANIFEST}: the shard is damaged; {_REBUILD}"
            )
        return out

    def documents_of(self, language: str) -> np.ndarray:
        """Index rows of the documents in ``language``."""
        if language not in self.languages:
            return self.documents[:0]
        return self.documents[self.documents["language"] == self.languages.index(language)]


_REBUILD = "run `geex data` again to rebuild the dataset"

# What a reader needs of a manifest, and the type each field must have.
_MANIFEST_FIELDS = {
    "token_dtype": str,
    "vocab_size": int,
    "eod_id": int,
    "languages": list,
    "splits": dict,
}


def read_manifest(folder: str | os.PathLike) -> dict:
    """``dataset.json`` of ``folder``, checked to hold every field a reader uses."""
    path = Path(folder) / MANIFEST
    if not path.is_file():
        hint = ""
        if Path(folder).is_dir() and any(Path(folder).glob("*.bin")):
            hint = " (an unfinished `geex data` run? run it again to finish)"
        raise GeexError(f"{folder} is not a Geex dataset: {MANIFEST} is missing{hint}")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise GeexError(f"cannot read {path}: {err}; {_REBUILD}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise GeexError(f"{path} is not a Geex dataset manifest")
    if manifest.get("format_version", 0) > FORMAT_VERSION:
        raise GeexError(
            f"{path} is a newer dataset format ({manifest['format_version']}): upgrade Geex"
        )
    for name, kind in _MANIFEST_FIELDS.items():
        value = manifest.get(name)
        if not isinstance(value, kind) or isinstance(value, bool):
            what = "has no" if name not in manifest else f"has a {type(value).__name__} as its"
            raise GeexError(f"{path} {what} '{name}' ({kind.__name__} expected); {_REBUILD}")
    try:
        np.dtype(manifest["token_dtype"])
    except TypeError:
        raise GeexError(
            f"{path}: token_dtype {manifest['token_dtype']!r} is not a dtype; {_REBUILD}"
        ) from None
    for split, entry in manifest["splits"].items():
        shards = entry.get("shards") if isinstance(entry, dict) else None
        if not isinstance(shards, list) or not all(isinstance(s, str) for s in shards):
            raise GeexError(f"{path}: split '{split}' has no list of shards; {_REBUILD}")
    return manifest
