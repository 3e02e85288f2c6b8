"""Data pipeline throughput: MB/s per core of each stage, Geex's blocks beside datatrove's stock blocks.

Both pipelines run in this one process (one core), on the same documents: the Python standard
library without site-packages (or --source folders), up to --mb megabytes per language. Every
stage is timed on the whole corpus, held in memory (nothing dropped by an earlier stage), so
each row's MB/s is comparable and the total is the time for one core to take the corpus
through all stages; reading is timed from a warm page cache.

Geex:  LocalReader -> CodeFilter(codegeex) -> Decontaminate(Geex's embedded evaluation set) -> RedactSecrets ->
       DedupSignatures (exact + MinHash 25x10) -> CleanedWriter -> ExactDuplicates,
       MinhashDedupBuckets, NearDuplicateClusters -> CleanedReader + DropDuplicates;
       then, apart, tag + tokenize + pack (PackShards) with a tokenizer trained on the corpus.
Stock: JsonlReader (datatrove has no source-tree reader: it reads a JSONL of the same files) ->
       GopherRepetitionFilter -> PIIFormatter -> MinhashDedupSignature (same 25x10, 32-bit)
       -> JsonlWriter (no compression) -> MinhashDedupBuckets, MinhashDedupCluster ->
       JsonlReader + MinhashDedupFilter. datatrove has no code filter, secret redaction or
       benchmark decontamination for code, so those rows compare the nearest stock block.
       The stock word tokenizer needs spaCy (``pip install spacy``; ``spacy.blank("en")`` needs
       no model download); without it the stock rows that need one are left out.

    python benchmarks/data.py
    python benchmarks/data.py --mb 20 --source /usr/lib/go/src
"""

from __future__ import annotations

import argparse
import os
import platform
import sysconfig
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # one core, like the other rows
os.environ.setdefault("TQDM_DISABLE", "1")  # read when tqdm is imported

from datatrove.data import Document
from datatrove.pipeline.dedup.minhash import MinhashDedupBuckets

REPEATS = 1  # set from --repeat: each stage is timed this many times, the fastest kept


def timed(run) -> tuple[object, float]:
    best = float("inf")
    for _ in range(REPEATS):
        start = time.perf_counter()
        result = run()
        best = min(best, time.perf_counter() - start)
    return result, best


def timed_once(run) -> tuple[object, float]:
    start = time.perf_counter()
    result = run()
    return result, time.perf_counter() - start


def through(block, docs: list[Document]) -> tuple[list[Document], float]:
    return timed(lambda: list(block.run(iter(docs), 0, 1)))


def copies(docs: list[Document]) -> list[Document]:
    """Fresh documents: some blocks rewrite text or metadata in place."""
    return [Document(d.text, d.id, metadata=dict(d.metadata)) for d in docs]


def read_corpus(sources: list[str], megabytes: float) -> tuple[list[Document], float]:
    from geex.data.embedded import EMBEDDED_EXCLUDED_DIRS
    from geex.data.readers.local import LocalReader

    reader = LocalReader(
        sources, excluded_dirs=EMBEDDED_EXCLUDED_DIRS, per_language_bytes=int(megabytes * 2**20)
    )
    list(reader.run(None, 0, 1))  # warm the page cache
    reader = LocalReader(
        sources, excluded_dirs=EMBEDDED_EXCLUDED_DIRS, per_language_bytes=int(megabytes * 2**20)
    )
    return timed(lambda: list(reader.run(None, 0, 1)))


def find_near_duplicates(folder: Path, config, cluster_block) -> float:
    def run():
        for band in range(config.num_buckets):
            buckets = MinhashDedupBuckets(
                str(folder / "minhash" / "sigs"), str(folder / "minhash" / "buckets"), config=config
            )
            buckets.run(None, band, config.num_buckets)
        result = cluster_block.run(None, 0, 1)
        if result is not None:
            list(result)

    return timed(run)[1]


def geex_stages(docs: list[Document], work: Path) -> dict[str, tuple[float, int]]:
    from geex.data.dedup import (
        DedupSignatures,
        DropDuplicates,
        ExactDuplicates,
        NearDuplicateClusters,
        minhash_config,
    )
    from geex.data.writer import CleanedReader, CleanedWriter

    times: dict[str, float] = {}
    corpus = docs
    try:
        from geex.data.filters import CodeFilter

        _, times["filter"] = through(CodeFilter("codegeex"), copies(corpus))
    except ImportError:
        print("(geex filter left out: geex.data.filters is missing)")
    try:
        from geex.data.decontaminate import Decontaminate

        block, build = timed(lambda: Decontaminate(["embedded"]))
        _, seconds = through(block, copies(corpus))
        times["decontaminate"] = seconds + build
    except Exception as err:  # no benchmark data here: reported, not fatal
        print(f"(geex decontaminate left out: {err})")
    try:
        from geex.data.pii import RedactSecrets

        _, times["pii"] = through(RedactSecrets(), copies(corpus))
    except ImportError:
        print("(geex pii left out: geex.data.pii is missing)")
    docs = copies(corpus)
    docs, times["dedup signatures"] = through(DedupSignatures(work / "dedup"), docs)
    docs, times["write jsonl"] = through(CleanedWriter(work / "cleaned"), docs)
    _, seconds = timed(lambda: list(ExactDuplicates(work / "dedup", 1).run()))
    seconds += find_near_duplicates(
        work / "dedup", minhash_config(), NearDuplicateClusters(work / "dedup", 1)
    )
    times["find duplicates"] = seconds
    kept, times["read + drop duplicates"] = timed(
        lambda: list(
            DropDuplicates(work / "dedup").run(
                CleanedReader(work / "cleaned").run(None, 0, 1), 0, 1
            )
        )
    )
    return times, kept


def stock_stages(docs: list[Document], work: Path) -> dict[str, float]:
    import orjson
    from datatrove.pipeline.dedup.minhash import (
        MinhashDedupCluster,
        MinhashDedupFilter,
        MinhashDedupSignature,
    )
    from datatrove.pipeline.filters import GopherRepetitionFilter
    from datatrove.pipeline.formatters import PIIFormatter
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.writers import JsonlWriter

    from geex.data.dedup import minhash_config

    times: dict[str, float] = {}
    source = work / "source"
    source.mkdir(parents=True)
    with open(source / "00000.jsonl", "wb") as file:
        for d in docs:
            file.write(orjson.dumps({"text": d.text, "id": d.id, "metadata": d.metadata}) + b"\n")
    docs, times["read"] = timed(lambda: list(JsonlReader(str(source)).run(None, 0, 1)))
    try:  # its word tokenizer needs spaCy
        _, times["filter"] = through(GopherRepetitionFilter(), copies(docs))
    except ImportError as err:
        print(f"(stock filter left out: {err})")
    _, times["pii"] = through(PIIFormatter(), copies(docs))
    config = minhash_config()
    try:
        signatures = MinhashDedupSignature(str(work / "minhash" / "sigs"), config=config)
        _, times["dedup signatures"] = timed(lambda: signatures.run(iter(docs), 0, 1))
    except ImportError as err:  # spaCy again; the later MinHash stages need the signatures
        print(f"(stock MinHash stages left out: {err})")
        _, times["write jsonl"] = through(
            JsonlWriter(str(work / "cleaned"), compression=None), docs
        )
        return times
    _, times["write jsonl"] = through(JsonlWriter(str(work / "cleaned"), compression=None), docs)
    cluster = MinhashDedupCluster(
        str(work / "minhash" / "buckets"), str(work / "minhash" / "remove"), config=config
    )
    times["find duplicates"] = find_near_duplicates(work, config, cluster)
    read_back = JsonlReader(str(work / "cleaned"))
    drop = MinhashDedupFilter(str(work / "minhash" / "remove"))
    _, times["read + drop duplicates"] = timed(
        lambda: list(drop.run(read_back.run(None, 0, 1), 0, 1))
    )
    return times


def tokenize_stage(
    kept: list[Document], work: Path, tokenizer_path: str | None
) -> tuple[float, float, int]:
    from geex.data.writer import CleanedWriter, PackShards, tagged_text
    from geex.tokenizer import load_tokenizer, train_tokenizer

    train_s = 0.0
    if tokenizer_path is None:
        texts = [tagged_text(d.metadata["language"], d.text) for d in kept]
        tokenizer, train_s = timed_once(lambda: train_tokenizer(texts, 8192))
        tokenizer.save(work / "out")
    else:
        load_tokenizer(tokenizer_path).save(work / "out")
    list(CleanedWriter(work / "pack" / "cleaned").run(iter(kept), 0, 1))  # the language list
    pack = PackShards(work / "out", work / "pack")
    _, seconds = timed_once(lambda: list(pack.run(iter(kept), 0, 1)))
    return seconds, train_s, int(pack.stats["tokens"].total)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--source", nargs="+", default=[sysconfig.get_paths()["stdlib"]])
    parser.add_argument(
        "--mb", type=float, default=32.0, help="read at most this much per language"
    )
    parser.add_argument("--tokenizer", help="tokenizer for the packing row (default: train one)")
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="time each stage N times, keep the fastest (shared machines)",
    )
    args = parser.parse_args()
    global REPEATS
    REPEATS = args.repeat
    from loguru import logger

    logger.remove()  # datatrove logs every bucket at INFO

    docs, read_s = read_corpus(args.source, args.mb)
    size = sum(d.metadata["size_bytes"] for d in docs)
    print(f"{len(docs):,} files, {size / 1e6:.1f} MB from {', '.join(args.source)}")
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, one process\n")
    with tempfile.TemporaryDirectory() as tmp:
        geex, kept = geex_stages(docs, Path(tmp) / "geex")
        stock = stock_stages(docs, Path(tmp) / "stock")
        pack_s, train_s, tokens = tokenize_stage(kept, Path(tmp) / "tok", args.tokenizer)

    rows = [("read", read_s, stock.get("read"))]
    for name, seconds in geex.items():
        rows.append((name, seconds, stock.get(name)))
    for name in stock:
        if name not in geex and name != "read":
            rows.append((name, None, stock[name]))
    mb = size / 1e6
    print(f"{'stage':<24}{'geex s':>9}{'geex MB/s':>11}{'stock s':>10}{'stock MB/s':>12}")

    def cell(seconds, width):
        return f"{'-':>{width}}" if seconds is None else f"{seconds:>{width}.2f}"

    def rate(seconds, width):
        return f"{'-':>{width}}" if not seconds else f"{mb / seconds:>{width}.1f}"

    for name, g, s in rows:
        print(f"{name:<24}{cell(g, 9)}{rate(g, 11)}{cell(s, 10)}{rate(s, 12)}")
    geex_total = read_s + sum(geex.values())
    stock_total = sum(stock.values())
    print(
        f"{'total, no tokenization':<24}{geex_total:>9.2f}{mb / geex_total:>11.1f}{stock_total:>10.2f}{mb / stock_total:>12.1f}"
    )
    print(
        f"\ntag + tokenize + pack: {pack_s:.2f} s, {mb / pack_s:.1f} MB/s, {tokens / pack_s / 1e6:.2f} M tokens/s "
        f"({tokens:,} tokens)"
    )
    if train_s:
        print(f"tokenizer training (8,192 ids, once per dataset): {train_s:.2f} s")
    print(f"whole pipeline with tokenization: {mb / (geex_total + pack_s):.1f} MB/s per core")


if __name__ == "__main__":
    main()
