"""Tokenizers: bytes per token per language, and encoding throughput against transformers.

1. Compression. A tokenizer trained by ``geex tokenizer train`` (or one given with
   --tokenizer) beside CodeGeeX-13B's on the same held-out code: the HumanEval-X prompts and
   solutions of the odd-numbered tasks in six languages. When this script trains the tokenizer,
   it trains on local code (the Python standard library, and any --train sources) plus the
   even-numbered tasks (unless --no-train-on-humanevalx), so no evaluated text was seen in
   training. More bytes per token is better; the ratio column is trained / CodeGeeX.

2. Throughput. ``Tokenizer.encode_batch`` of the CodeGeeX tokenizer against the obvious
   baseline: transformers' fast GPT-2 tokenizer built from the same files, called on the text
   after CodeGeeX's whitespace rewrite done in Python (how THUDM/CodeGeeX calls it). Both give
   the same ids (checked first). The timed repeats alternate between the two and the median of
   each is reported; ratio > 1 means Geex is faster. Both run in tokenizers' Rust threads, so
   only numbers from the same machine and run compare.

    python benchmarks/tokenizer.py
    python benchmarks/tokenizer.py --no-throughput --no-train-on-humanevalx \\
        --train '/usr/include/llvm-14/**/*.h' '/usr/lib/node_modules/npm/**/*.js'
    python benchmarks/tokenizer.py --tokenizer path/to/trained --codegeex path/to/codegeex-tokenizer
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import statistics
import sysconfig
import time
from datetime import date
from pathlib import Path

import tokenizers
from rich.console import Console
from rich.table import Table

from geex.tokenizer import DEFAULT_VOCAB_SIZE, load_tokenizer, train_tokenizer
from geex.tokenizer.train import SourceTexts, source_files

SHARED_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
HUMANEVALX_LANGUAGES = ("python", "cpp", "java", "js", "go", "rust")
COMPRESSION_COLUMNS = [
    *("language", "bytes", "CodeGeeX tokens", "bytes/token"),
    *("trained tokens", "bytes/token", "ratio"),
]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokenizer", help="a trained tokenizer to compare (default: train one)")
    parser.add_argument(
        "--codegeex",
        default=SHARED_DATA / "codegeex-tokenizer",
        type=Path,
        help="CodeGeeX's vocab.json + merges.txt folder (default: ../shared/data/...)",
    )
    parser.add_argument(
        "--humanevalx", default=SHARED_DATA / "humaneval-x", type=Path, help="HumanEval-X folder"
    )
    parser.add_argument("--train", nargs="*", default=[], help="more training sources (globs)")
    parser.add_argument(
        "--train-on-humanevalx",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="train on the even-numbered tasks too (default: yes)",
    )
    parser.add_argument("--stdlib-mb", type=float, default=8.0, help="MB of stdlib to train on")
    parser.add_argument("--vocab-size", type=int, default=DEFAULT_VOCAB_SIZE)
    parser.add_argument(
        "--throughput", action=argparse.BooleanOptionalAction, default=True, help="time encoding"
    )
    parser.add_argument("--throughput-mb", type=float, default=4.0, help="MB of text to encode")
    parser.add_argument("--repeats", type=int, default=7, help="timed repeats per tokenizer")
    return parser.parse_args()


def humanevalx_programs(folder: Path, language: str, *, with_tests: bool = False) -> list[str]:
    """Each task's prompt + canonical solution, in task order (Rust adds its declaration)."""
    with gzip.open(folder / f"humaneval_{language}.jsonl.gz", "rt", encoding="utf-8") as lines:
        tasks = [json.loads(line) for line in lines]
    tasks.sort(key=lambda t: int(t["task_id"].split("/")[1]))
    declaration = "declaration" if language == "rust" else None
    return [
        t["prompt"]
        + (t[declaration] if declaration else "")
        + t["canonical_solution"]
        + (t["test"] if with_tests else "")
        for t in tasks
    ]


def stdlib_texts(megabytes: float) -> list[str]:
    """The first ``megabytes`` of the standard library's .py files, in sorted path order."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    files = [p for p in sorted(stdlib.rglob("*.py")) if "site-packages" not in p.parts]
    texts, total = [], 0
    for text in SourceTexts(files):
        if total >= megabytes * 1e6:
            break
        texts.append(text)
        total += len(text.encode("utf-8"))
    return texts


def train_on_local_code(args: argparse.Namespace):
    texts = stdlib_texts(args.stdlib_mb)
    if args.train_on_humanevalx:
        for language in HUMANEVALX_LANGUAGES:
            texts += humanevalx_programs(args.humanevalx, language)[0::2]
    if args.train:
        texts += list(SourceTexts(source_files(args.train)))
    megabytes = sum(len(t.encode("utf-8")) for t in texts) / 1e6
    start = time.perf_counter()
    tokenizer = train_tokenizer(texts, vocab_size=args.vocab_size)
    seconds = time.perf_counter() - start
    return tokenizer, f"trained here on {megabytes:.1f} MB in {seconds:.1f} s"


def compression_rows(codegeex, trained, held_out: dict[str, list[str]]) -> list[list[str]]:
    rows, totals = [], [0, 0, 0]
    for language, texts in held_out.items():
        n_bytes = sum(len(t.encode("utf-8")) for t in texts)
        n_codegeex = sum(map(len, codegeex.encode_batch(texts)))
        n_trained = sum(map(len, trained.encode_batch(texts)))
        rows.append(_compression_row(language, n_bytes, n_codegeex, n_trained))
        totals = [totals[0] + n_bytes, totals[1] + n_codegeex, totals[2] + n_trained]
    rows.append(_compression_row("all", *totals))
    return rows


def _compression_row(name: str, n_bytes: int, n_codegeex: int, n_trained: int) -> list[str]:
    codegeex_bpt, trained_bpt = n_bytes / n_codegeex, n_bytes / n_trained
    return [
        name,
        f"{n_bytes:,}",
        f"{n_codegeex:,}",
        f"{codegeex_bpt:.2f}",
        f"{n_trained:,}",
        f"{trained_bpt:.2f}",
        f"{trained_bpt / codegeex_bpt:.2f}",
    ]


def codegeex_baseline(codegeex_dir: Path):
    """CodeGeeX's own path: Python whitespace rewrite, then transformers' fast GPT-2 tokenizer.

    Returns (encode_batch, encode) working on plain text.
    """
    from transformers import AutoTokenizer
    from transformers.utils import logging

    logging.set_verbosity_error()
    hf = AutoTokenizer.from_pretrained(str(codegeex_dir))

    def rewrite(text: str) -> str:
        for n in range(10, 1, -1):
            text = text.replace(" " * n, f"<|extratoken_{n + 8}|>")
        return text

    def encode_batch(texts: list[str]) -> list[list[int]]:
        return hf([rewrite(t) for t in texts], add_special_tokens=False)["input_ids"]

    def encode(text: str) -> list[int]:
        return hf(rewrite(text), add_special_tokens=False)["input_ids"]

    return encode_batch, encode


def throughput_rows(codegeex, codegeex_dir: Path, texts: list[str], repeats: int):
    baseline_batch, baseline_one = codegeex_baseline(codegeex_dir)
    if baseline_batch(texts) != codegeex.encode_batch(texts):
        raise SystemExit("the baseline and Geex disagree on the ids; not timing")
    one_at_a_time = texts[: max(1, len(texts) // 4)]
    cases = {
        "encode_batch": (texts, codegeex.encode_batch, baseline_batch),
        "encode, one text at a time": (
            one_at_a_time,
            lambda batch: [codegeex.encode(t) for t in batch],
            lambda batch: [baseline_one(t) for t in batch],
        ),
    }
    rows = []
    for name, (batch, geex_run, baseline_run) in cases.items():
        geex_times, baseline_times = [], []
        for _ in range(repeats):  # alternating, so that load changes hit both alike
            for run, times in ((geex_run, geex_times), (baseline_run, baseline_times)):
                start = time.perf_counter()
                run(batch)
                times.append(time.perf_counter() - start)
        megabytes = sum(len(t.encode("utf-8")) for t in batch) / 1e6
        ratios = [b / g for g, b in zip(geex_times, baseline_times, strict=True)]
        rows.append(
            [
                f"{name} ({megabytes:.1f} MB, {len(batch):,} texts)",
                f"{megabytes / statistics.median(geex_times):.2f}",
                f"{megabytes / statistics.median(baseline_times):.2f}",
                f"{statistics.median(ratios):.2f}",
            ]
        )
    return rows


def print_table(title: str, columns: list[str], rows: list[list[str]], notes: list[str]) -> None:
    table = Table(title=title)
    for column in columns:
        table.add_column(column, justify="left" if column == columns[0] else "right")
    for row in rows:
        table.add_row(*row)
    console = Console(width=120)
    console.print(table)
    for note in notes:
        console.print(note)


def main() -> None:
    args = parse_args()
    for path in (args.codegeex, args.humanevalx):
        if not path.exists():
            raise SystemExit(f"{path} not found; give --codegeex / --humanevalx")
    codegeex = load_tokenizer(args.codegeex)
    if args.tokenizer:
        trained, origin = load_tokenizer(args.tokenizer), f"loaded from {args.tokenizer}"
    else:
        trained, origin = train_on_local_code(args)
    held_out = {
        language: humanevalx_programs(args.humanevalx, language)[1::2]
        for language in HUMANEVALX_LANGUAGES
    }
    machine = (
        f"{date.today()}, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs, tokenizers {tokenizers.__version__}"
    )
    print_table(
        "Bytes per token on HumanEval-X (odd tasks, prompt + solution)",
        COMPRESSION_COLUMNS,
        compression_rows(codegeex, trained, held_out),
        [
            f"CodeGeeX: {codegeex.vocab_size:,} ids. Trained: {trained.vocab_size:,} ids, {origin}.",
            machine,
        ],
    )

    if not args.throughput:
        return
    programs = []
    for language in HUMANEVALX_LANGUAGES:
        programs += humanevalx_programs(args.humanevalx, language, with_tests=True)
    copies = max(1, round(args.throughput_mb * 1e6 / sum(len(p.encode()) for p in programs)))
    print_table(
        "Encoding throughput, CodeGeeX tokenizer (MB/s, median of repeats)",
        ["call", "geex", "transformers + Python rewrite", "ratio"],
        throughput_rows(codegeex, args.codegeex, programs * copies, args.repeats),
        [
            f"HumanEval-X programs with tests, {copies} copies; ratio: median of the "
            f"per-repeat time ratios (baseline / geex).",
            machine,
        ],
    )


if __name__ == "__main__":
    main()
