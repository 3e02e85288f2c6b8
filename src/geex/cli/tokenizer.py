"""``geex tokenizer``: train, inspect, convert and try tokenizers."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from geex.errors import GeexError
from geex.tokenizer import DEFAULT_VOCAB_SIZE, Tokenizer, load_tokenizer, train_tokenizer
from geex.tokenizer.tokenizer import check_tokenizer_out
from geex.tokenizer.train import SourceTexts, source_files

TOKENIZER_HELP = (
    "a tokenizer.json, a folder holding one, or a folder with CodeGeeX's vocab.json and merges.txt"
)


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "tokenizer",
        help="train, inspect, convert and try tokenizers",
        description="Train a byte-level BPE for code, or use CodeGeeX-13B's tokenizer.",
    )
    parser.set_defaults(handler=lambda args: parser.print_help() or 2)
    actions = parser.add_subparsers(dest="action", metavar="ACTION")

    train = actions.add_parser(
        "train",
        help="train a tokenizer on source files",
        description="Train a byte-level BPE tokenizer for code and save it as tokenizer.json.",
    )
    train.add_argument(
        "sources",
        nargs="+",
        metavar="SOURCE",
        help="files, folders (their source files, by extension) or globs ('src/**/*.py')",
    )
    train.add_argument("--out", required=True, help="folder to write tokenizer.json and its config")
    train.add_argument(
        "--vocab-size",
        type=int,
        default=DEFAULT_VOCAB_SIZE,
        help="ids in all (default: %(default)s)",
    )
    train.add_argument(
        "--languages",
        help="comma-separated language keys whose tag line gets a token (default: every language)",
    )
    train.add_argument(
        "--min-frequency",
        type=int,
        default=2,
        help="fewest occurrences for a merge (default: %(default)s)",
    )
    train.set_defaults(handler=_train)

    encode = actions.add_parser(
        "encode", help="print the ids and tokens of a text", description="Encode a text."
    )
    encode.add_argument("text", help="the text; '-' reads standard input")
    encode.add_argument("--tokenizer", required=True, help=TOKENIZER_HELP)
    encode.add_argument(
        "--allow-special",
        action="store_true",
        help="match special-token names in the text (<|endoftext|>) instead of encoding them as text",
    )
    encode.add_argument("--ids-only", action="store_true", help="print only the ids")
    encode.set_defaults(handler=_encode)

    info = actions.add_parser(
        "info", help="vocabulary size and special ids", description="Describe a tokenizer."
    )
    info.add_argument("tokenizer", help=TOKENIZER_HELP)
    info.set_defaults(handler=_info)

    convert = actions.add_parser(
        "convert",
        help="save a tokenizer as tokenizer.json (e.g. CodeGeeX's vocab.json + merges.txt)",
        description="Load a tokenizer and save it in the standard tokenizer.json layout.",
    )
    convert.add_argument("tokenizer", help=TOKENIZER_HELP)
    convert.add_argument("--out", required=True, help="folder to write into")
    convert.set_defaults(handler=_convert)


def _train(args: argparse.Namespace) -> int:
    check_tokenizer_out(args.out)
    if args.min_frequency < 0:
        raise GeexError(f"--min-frequency must be >= 0, got {args.min_frequency}")
    files = source_files(args.sources)
    if not files:
        raise GeexError(
            f"no input files: {' '.join(args.sources)} holds no source file of a known language"
        )
    languages = [key.strip() for key in args.languages.split(",")] if args.languages else None
    texts = SourceTexts(files)
    print(f"training on {len(files):,} files", flush=True)
    tokenizer = train_tokenizer(
        texts,
        vocab_size=args.vocab_size,
        languages=languages,
        min_frequency=args.min_frequency,
        show_progress=True,
        length=len(files),
    )
    tokenizer.save(args.out)
    skipped = f", skipped {len(texts.skipped):,} binary or non-UTF-8" if texts.skipped else ""
    print(f"read {texts.read:,} files ({texts.bytes / 1e6:.1f} MB){skipped}")
    print(f"saved {tokenizer.vocab_size:,} ids to {args.out}")
    if tokenizer.vocab_size < args.vocab_size:
        print(
            f"note: the text ran out of merges seen {args.min_frequency}+ times before "
            f"{args.vocab_size:,} ids; give more text or a smaller --vocab-size"
        )
    return 0


def _encode(args: argparse.Namespace) -> int:
    tokenizer = load_tokenizer(args.tokenizer)
    raw = sys.stdin.buffer.read() if args.text == "-" else os.fsencode(args.text)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        where = "stdin" if args.text == "-" else "the text"
        raise GeexError(
            f"{where} is not UTF-8 (byte 0x{raw[err.start]:02x} at offset {err.start})"
        ) from None
    ids = tokenizer.encode(text, allow_special=args.allow_special)
    print(" ".join(map(str, ids)))
    if not args.ids_only:
        print(f"{len(ids)} tokens, {len(text.encode('utf-8'))} bytes")
        for token_id in ids:
            print(f"{token_id:>8}  {tokenizer.decode([token_id])!r}")
    return 0


def _info(args: argparse.Namespace) -> int:
    tokenizer = load_tokenizer(args.tokenizer)
    for name, value in describe(tokenizer):
        print(f"{name + ':':<24}{value}")
    return 0


def describe(tokenizer: Tokenizer) -> list[tuple[str, str]]:
    """The lines of ``geex tokenizer info``."""
    fim = (
        tokenizer.fim_prefix_id,
        tokenizer.fim_middle_id,
        tokenizer.fim_suffix_id,
        tokenizer.fim_pad_id,
    )
    tags = tokenizer.language_tag_ids()
    lines = [
        ("kind", tokenizer.kind),
        ("ids", f"{tokenizer.vocab_size:,}"),
        ("end of document", f"{tokenizer.eod_token} = {tokenizer.eod_id} (also padding)"),
        (
            "fill in the middle",
            "prefix {}, middle {}, suffix {}, pad {}".format(*fim)
            if fim[0] is not None
            else "none",
        ),
        ("special tokens", f"{len(tokenizer.special_tokens()):,}"),
        (
            "language tag tokens",
            f"{len(tags)} (ids {min(tags.values())}..{max(tags.values())})" if tags else "none",
        ),
    ]
    if tokenizer.marker_aliases:
        ids = sorted(tokenizer.marker_aliases.values())
        lines.append(("whitespace-run tokens", f"{len(ids)} (ids {ids[0]}..{ids[-1]})"))
    return lines


def _convert(args: argparse.Namespace) -> int:
    tokenizer = load_tokenizer(args.tokenizer)
    source = Path(args.tokenizer)
    source = source if source.is_dir() else source.parent
    if Path(args.out).resolve() != source.resolve():  # beside its vocab.json is fine
        check_tokenizer_out(args.out)
    tokenizer.save(args.out)
    print(f"saved {tokenizer.kind} tokenizer ({tokenizer.vocab_size:,} ids) to {args.out}")
    return 0
