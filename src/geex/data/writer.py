"""Writing what the data stage makes: cleaned JSONL between stages, then the training shards.

- :class:`CleanedWriter` ends the cleaning stage: one JSONL file per task, written under a
  temporary name and renamed when the task ends, so a killed task leaves nothing that looks
  finished. It also records which languages the task saw (the shards need one language list
  before any task packs).
- :class:`CleanedReader` reads one task's file back, in order: a document's position in it is
  its name for the deduplication stages.
- :class:`TrainTokenizer` trains a tokenizer on the deduplicated corpus when none is given;
- :class:`PackShards` tags each file with its language line, sends it to the train or
  validation split by a hash of its id (with its source folder's name, not where the folder
  lies), rearranges some train files for fill-in-the-middle (:mod:`geex.data.fim`), tokenizes
  in batches, and appends each to its task's own shard files (``train-<task>-<n>.bin``;
  a weighted language's repeats to ``train-<task>-repeat<k>-<n>.bin``);
  :func:`finish_dataset` lists them all in ``dataset.json``, with the FIM settings the files
  were packed with.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path, PurePath

import orjson
from datatrove.data import Document
from datatrove.pipeline.base import PipelineStep

from geex.atomic import atomic_write_text
from geex.data.dedup import load_removals
from geex.data.fim import (
    DEFAULT_FIM_SPM_RATE,
    FimEncoder,
    TrainingText,
    fim_record,
    resolve_fim_rate,
)
from geex.data.shards import ShardWriter, write_manifest
from geex.errors import GeexError
from geex.languages import LANGUAGES, get_language
from geex.tokenizer import load_tokenizer, train_tokenizer

ENCODE_BATCH = 256  # documents per encode_batch call: enough to keep the Rust threads busy


def tag_line(language: str) -> str:
    """CodeGeeX's language tag line that heads every file, with its newline."""
    return f"{get_language(language).tag}\n"


def tagged_text(language: str, text: str) -> str:
    """The file as the model sees it: CodeGeeX's language tag line, then the code."""
    return tag_line(language) + text


def split_key(document: Document) -> str:
    """The document's id with its source cut to the source's last name (``code::a/b.py`` for
    ``/home/me/code::a/b.py``): the same files make the same split wherever the folder lies."""
    source = str(document.metadata.get("source") or "")
    if source and document.id.startswith(f"{source}::"):
        name = PurePath(source.rstrip("/\\")).name or source
        return f"{name}::{document.id[len(source) + 2 :]}"
    return document.id


def hash_fraction(key: str) -> float:
    """A number in [0, 1) drawn from ``key`` alone: the same file draws the same on every run."""
    digest = hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def is_validation(key: str, fraction: float) -> bool:
    """A stable, uniform choice from the document's identity alone (see :func:`split_key`)."""
    return hash_fraction(key) < fraction


def train_copies(key: str, weight: float) -> int:
    """How many times a train file of a language weighted ``weight`` is packed: the whole part
    of the weight, and one more for the share of files its fraction draws (weight 2.5 packs
    every file twice and half of them a third time; 0.5 packs half of them once)."""
    whole = int(weight)
    return whole + (hash_fraction(f"{key}#weight") < weight - whole)


def copy_key(key: str, copy: int) -> str:
    """The identity of a file's ``copy``-th repeat: its own fill-in-the-middle draw. The first
    copy keeps the file's key, so a weight of 1 packs what no weight packs."""
    return key if copy == 0 else f"{key}#{copy}"


def cleaned_path(folder: str | os.PathLike, rank: int) -> Path:
    return Path(folder) / f"{rank:05d}.jsonl"


class CleanedWriter(PipelineStep):
    """The cleaning stage's output: ``NNNNN.jsonl`` (text, id, metadata) and ``NNNNN.languages.json``."""

    name = "cleaned jsonl"
    type = "💽 - WRITER"

    def __init__(self, folder: str | os.PathLike):
        super().__init__()
        self.folder = str(folder)

    def run(self, data, rank: int = 0, world_size: int = 1):
        path = cleaned_path(self.folder, rank)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".jsonl.tmp")
        languages: dict[str, int] = {}
        with open(tmp, "wb") as file:
            for doc in data:
                with self.track_time():
                    record = {"text": doc.text, "id": doc.id, "metadata": doc.metadata}
                    file.write(orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE))
                    language = doc.metadata["language"]
                    languages[language] = languages.get(language, 0) + 1
                    self.stat_update("documents")
                    self.stat_update(f"files_{language}")
                    self.stat_update(f"bytes_{language}", value=doc.metadata.get("size_bytes", 0))
                yield doc
        atomic_write_text(
            path.with_suffix(".languages.json"), json.dumps(languages, sort_keys=True)
        )
        os.replace(tmp, path)


def read_cleaned(folder: str | os.PathLike, rank: int):
    """One task's cleaned documents, in the order they were written (none if it wrote none)."""
    path = cleaned_path(folder, rank)
    if not path.is_file():
        return
    with open(path, "rb") as file:
        for line in file:
            record = orjson.loads(line)
            yield Document(text=record["text"], id=record["id"], metadata=record["metadata"])


class CleanedReader(PipelineStep):
    """Reads the cleaning stage's file of the same task number."""

    name = "cleaned jsonl"
    type = "📖 - READER"

    def __init__(self, folder: str | os.PathLike):
        super().__init__()
        self.folder = str(folder)

    def run(self, data=None, rank: int = 0, world_size: int = 1):
        if data:
            yield from data
        for doc in read_cleaned(self.folder, rank):
            self.stat_update("documents")
            yield doc


def corpus_languages(cleaned_folder: str | os.PathLike) -> list[str]:
    """The languages any cleaning task saw, in the registry's order: the shards' language list."""
    seen: set[str] = set()
    for path in Path(cleaned_folder).glob("*.languages.json"):
        seen.update(json.loads(path.read_text()))
    return [key for key in LANGUAGES if key in seen]


def part_path(work: str | os.PathLike, rank: int) -> Path:
    return Path(work) / "parts" / f"{rank:05d}.json"


class PackShards(PipelineStep):
    """Tag, tokenize and pack documents into this task's shards; count files, bytes, tokens.

    The task's part (its shard names, counts per split and language, and the FIM settings and
    layouts of its train files) is written last, as ``parts/NNNNN.json`` under ``work``: the
    final step builds the manifest from the parts. ``fim_rate`` None packs at the default
    rate of the tokenizer (:func:`geex.data.fim.resolve_fim_rate`).
    """

    name = "pack shards"
    type = "🔢 - TOKENIZER"

    def __init__(
        self,
        out: str | os.PathLike,
        work: str | os.PathLike,
        *,
        tokenizer: str | os.PathLike | None = None,
        validation_fraction: float = 0.05,
        shard_tokens: int | None = None,
        fim_rate: float | None = None,
        fim_spm_rate: float = DEFAULT_FIM_SPM_RATE,
        fim_seed: int = 0,
        language_weights: dict[str, float] | None = None,
    ):
        super().__init__()
        self.out, self.work = str(out), str(work)
        self.tokenizer = str(tokenizer) if tokenizer else str(out)
        self.validation_fraction = validation_fraction
        self.shard_tokens = shard_tokens
        self.fim_rate, self.fim_spm_rate, self.fim_seed = fim_rate, fim_spm_rate, fim_seed
        self.language_weights = dict(language_weights or {})

    def copies(self, doc: Document, split: str) -> int:
        """How many times ``doc`` goes into its split (validation files: once, unweighted)."""
        weight = self.language_weights.get(doc.metadata["language"], 1.0)
        if split == "validation" or weight == 1:
            return 1
        return train_copies(split_key(doc), weight)

    def run(self, data, rank: int = 0, world_size: int = 1):
        tokenizer = load_tokenizer(self.tokenizer)
        languages = corpus_languages(Path(self.work) / "cleaned")
        options = {"shard_tokens": self.shard_tokens} if self.shard_tokens else {}

        def shard_writer(prefix: str) -> ShardWriter:
            return ShardWriter(
                self.out,
                vocab_size=tokenizer.vocab_size,
                eod_id=tokenizer.eod_id,
                languages=languages,
                shard_prefix=prefix,
                **options,
            )

        writer = shard_writer(f"{rank:05d}")
        # A weighted file's copy k >= 1 goes to repeats[k], whose shards the manifest lists
        # after every task's first copies: copies packed side by side would share a window.
        repeats: dict[int, ShardWriter] = {}
        encoder = FimEncoder(
            tokenizer,
            rate=resolve_fim_rate(self.fim_rate, tokenizer),
            spm_rate=self.fim_spm_rate,
            seed=self.fim_seed,
        )
        counts: dict[str, dict[str, dict[str, int]]] = {}
        layouts = {"plain": 0, "psm": 0, "spm": 0}  # of the train files, every copy
        batch: list[Document] = []

        def pack(batch: list[Document]) -> None:
            with self.track_time(unit="batch"):
                # (document, split, copy, number of copies): the first copy is encoded even
                # when none is packed, so that the card counts every file's tokens once
                items = []
                for d in batch:
                    split = (
                        "validation"
                        if is_validation(split_key(d), self.validation_fraction)
                        else "train"
                    )
                    n = self.copies(d, split)
                    items += [(d, split, copy, n) for copy in range(max(n, 1))]
                texts = [
                    TrainingText(copy_key(d.id, copy), tag_line(d.metadata["language"]), d.text)
                    for d, _, copy, _ in items
                ]
                encoded = encoder.encode_batch(
                    texts, transform=[split == "train" for _, split, _, _ in items]
                )
                for (doc, split, copy, n), (ids, layout) in zip(items, encoded, strict=True):
                    language = doc.metadata["language"]
                    row = counts.setdefault(split, {}).setdefault(
                        language, {"files": 0, "bytes": 0, "tokens": 0, "packed_tokens": 0}
                    )
                    if copy == 0:  # files, bytes and tokens count each file once
                        row["files"] += 1
                        row["bytes"] += doc.metadata.get("size_bytes", len(doc.text.encode()))
                        row["tokens"] += len(ids) + 1
                        self.stat_update("documents")
                    if copy >= n:
                        continue  # weighted to no copy: counted, not packed
                    if copy == 0:
                        writer.add(ids, language, split)
                    else:
                        if copy not in repeats:
                            repeats[copy] = shard_writer(f"{rank:05d}-repeat{copy}")
                        repeats[copy].add(ids, language, split)
                    row["packed_tokens"] += len(ids) + 1
                    if split == "train":
                        layouts[layout] += 1
                        self.stat_update(f"fim_{layout}")
                    self.stat_update("tokens", value=len(ids) + 1)

        for doc in data:
            batch.append(doc)
            if len(batch) == ENCODE_BATCH:
                pack(batch)
                batch = []
            yield doc
        if batch:
            pack(batch)
        part = writer.close_part()
        part["repeats"] = [repeats[copy].close_part() for copy in sorted(repeats)]
        part["counts"] = counts
        part["fim"] = {
            "rate": encoder.rate,
            "spm_rate": encoder.spm_rate,
            "seed": encoder.seed,
            "style": encoder.style_name,
            "train_files": layouts,
        }
        path = part_path(self.work, rank)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(part, indent=1))


def shard_parts(parts: list[dict]) -> list[dict]:
    """The shard writers' parts in stream order: every task's first copies, then each task's
    second copies of weighted files, then third, ... (so that copies lie far apart)."""
    repeats = [part.get("repeats", []) for part in parts]
    rounds = max(map(len, repeats), default=0)
    return [*parts, *(r[k] for k in range(rounds) for r in repeats if k < len(r))]


def finish_dataset(
    out: str | os.PathLike, work: str | os.PathLike, tasks: int, extra: dict | None = None
):
    """Write ``dataset.json`` from the parts of tasks ``0..tasks-1``; returns the parts."""
    parts = []
    for rank in range(tasks):
        path = part_path(work, rank)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: pack task {rank} has not finished")
        parts.append(json.loads(path.read_text()))
    tokenizer = load_tokenizer(out)
    languages = corpus_languages(Path(work) / "cleaned")
    write_manifest(
        out,
        shard_parts(parts),
        vocab_size=tokenizer.vocab_size,
        eod_id=tokenizer.eod_id,
        languages=languages,
        extra={"fim": fim_record(parts), **(extra or {})},
    )
    return parts


class Progress(PipelineStep):
    """Pass-through step that writes ``{"documents": n, "bytes": b}`` for its task every second.

    The command line sums these files to show a stage's progress while its tasks run in other
    processes (or on other machines).
    """

    name = "progress"
    type = "📊 - STATS"

    def __init__(self, folder: str | os.PathLike, every_s: float = 1.0):
        super().__init__()
        self.folder, self.every_s = str(folder), every_s

    def run(self, data, rank: int = 0, world_size: int = 1):
        path = Path(self.folder) / f"{rank:05d}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        documents = size = 0
        last = time.monotonic()
        for doc in data:
            documents += 1
            size += doc.metadata.get("size_bytes", 0)
            self.stat_update("documents")
            self.stat_update("bytes", value=doc.metadata.get("size_bytes", 0))
            if time.monotonic() - last > self.every_s:
                atomic_write_text(path, json.dumps({"documents": documents, "bytes": size}))
                last = time.monotonic()
            yield doc
        atomic_write_text(path, json.dumps({"documents": documents, "bytes": size, "done": True}))


def read_progress(folder: str | os.PathLike) -> tuple[int, int]:
    documents = size = 0
    for path in Path(folder).glob("*.json"):
        try:
            state = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        documents += state["documents"]
        size += state["bytes"]
    return documents, size


class TrainTokenizer(PipelineStep):
    """Trains a tokenizer on the deduplicated, tagged corpus (up to a byte budget) into OUT."""

    name = "train tokenizer"
    type = "🔢 - TOKENIZER"

    def __init__(
        self,
        out: str | os.PathLike,
        work: str | os.PathLike,
        tasks: int,
        vocab_size: int,
        *,
        sample_bytes: int,
        exact: bool,
        near: bool,
    ):
        super().__init__()
        self.out, self.work, self.tasks = str(out), str(work), tasks
        self.vocab_size = vocab_size
        self.sample_bytes = sample_bytes
        self.exact, self.near = exact, near

    def run(self, data=None, rank: int = 0, world_size: int = 1):
        with self.track_time():
            texts = list(self._texts())
            if not texts:
                raise GeexError(
                    "no file left to train a tokenizer on: every file was skipped or dropped "
                    f"(the counts are in {self.work}/logs/clean/stats)"
                )
            tokenizer = train_tokenizer(texts, self.vocab_size)
            tokenizer.save(self.out)
            self.stat_update("documents", value=len(texts))
        if data:
            yield from data

    def _texts(self):
        work, budget = Path(self.work), self.sample_bytes
        for rank in range(self.tasks):
            removed = set()
            if self.exact:
                removed |= load_removals(work / "dedup" / "exact", rank)
            if self.near:
                removed |= load_removals(work / "dedup" / "near", rank)
            for position, doc in enumerate(read_cleaned(work / "cleaned", rank)):
                if position in removed:
                    continue
                text = tagged_text(doc.metadata["language"], doc.text)
                budget -= len(text)
                if budget < 0:
                    return
                yield text
