"""``geex data``: turn source code into training shards."""

from __future__ import annotations

import argparse

from geex.errors import GeexError


def register(subparsers) -> None:
    parser = subparsers.add_parser("data", help="collect code and pack it into training shards")
    parser.set_defaults(handler=lambda args: parser.print_help() or 2)
    verbs = parser.add_subparsers(dest="verb", metavar="VERB")
    pack = verbs.add_parser(
        "pack",
        help="tag, tokenize and pack source files into shards",
        description="Tag each source file with its language line, tokenize it and pack it into "
        "the shard format `geex train` reads. Without --tokenizer a tokenizer is trained on "
        "the same files and saved beside the shards.",
    )
    pack.add_argument("sources", nargs="+", metavar="SOURCE", help="files, folders or globs")
    pack.add_argument("--out", required=True, help="output folder")
    pack.add_argument("--tokenizer", help="tokenizer to use (default: train one on the sources)")
    pack.add_argument("--vocab-size", type=int, default=8192, help="when training a tokenizer")
    pack.add_argument("--validation-fraction", type=float, default=0.05)
    pack.set_defaults(handler=_pack)


def _pack(args: argparse.Namespace) -> int:
    from geex.data.pack import PackStats, pack_documents, read_source_files
    from geex.tokenizer import load_tokenizer, train_tokenizer
    from geex.tokenizer.train import source_files

    if not 0 <= args.validation_fraction < 1:
        raise GeexError("--validation-fraction must be in [0, 1)")
    files = source_files(args.sources)
    if not files:
        raise GeexError("no source files found in " + ", ".join(args.sources))
    if args.tokenizer:
        tokenizer = load_tokenizer(args.tokenizer)
    else:
        from geex.data.pack import tagged_text

        texts = (tagged_text(lang, text) for _, lang, text in read_source_files(files, PackStats()))
        tokenizer = train_tokenizer(texts, args.vocab_size, show_progress=True, length=len(files))
    stats = PackStats()
    pack_documents(
        read_source_files(files, stats),
        args.out,
        tokenizer,
        validation_fraction=args.validation_fraction,
        stats=stats,
    )
    total = sum(stats.tokens.values())
    print(f"packed {sum(stats.files.values()):,} files, {total:,} tokens into {args.out}")
    for language, n in sorted(stats.files.items(), key=lambda kv: -kv[1]):
        print(f"  {language:<12} {n:>7,} files {stats.tokens[language]:>12,} tokens")
    for reason, n in stats.skipped.items():
        print(f"  skipped ({reason}): {n:,}")
    return 0
