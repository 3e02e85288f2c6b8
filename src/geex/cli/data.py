"""``geex data``: collect, clean, deduplicate, decontaminate, tag and shard source code."""

from __future__ import annotations

import argparse
import os

from geex.cli.flags import add_config_flags, flag_values
from geex.config import from_dict
from geex.data.config import DataConfig

_DESCRIPTION = """\
Turn source code into the shards `geex train --data OUT` reads, with a dataset card.

SOURCE is a folder, a file, a tar or zip archive, a git URL or bare repository, github:QUERY
(token from GITHUB_TOKEN), a JSONL/Parquet dataset file or folder, or hf:OWNER/NAME. With no
SOURCE, the code on this machine: the Python standard library, C/C++ headers, and the Go, Java,
JavaScript and Rust sources that are installed (each language capped). Without --tokenizer a
tokenizer is trained on the cleaned corpus and saved in OUT. Run it again to resume.
"""


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "data",
        help="collect code and turn it into training shards",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("sources", nargs="*", metavar="SOURCE", help="where the code comes from")
    add_config_flags(parser, DataConfig)
    parser.add_argument(
        "--overwrite", action="store_true", help="delete an earlier `geex data` OUT and start again"
    )
    parser.set_defaults(handler=_run)


def config_from_args(args: argparse.Namespace) -> DataConfig:
    """The flags given and the SOURCE arguments; with no SOURCE, the embedded default's caps."""
    from geex.data.embedded import with_embedded_defaults
    from geex.languages import get_language

    fields = with_embedded_defaults({**flag_values(DataConfig, args), "sources": args.sources})
    if fields.get("languages"):
        fields["languages"] = [get_language(name).key for name in fields["languages"]]
    return from_dict(DataConfig, fields, kind="data")


def _run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from geex.data.pipeline import run_data_pipeline
    from geex.data.stage_progress import StageProgress

    console = Console(stderr=True)
    if args.sources[:1] == ["pack"] and not os.path.exists("pack"):
        # the verb of the first `geex data`, still in older notes and scripts
        console.print("`geex data pack SOURCE ...` is now `geex data SOURCE ...`")
        args.sources = args.sources[1:]
    config = config_from_args(args)
    if not args.sources:
        from geex.data.embedded import embedded_sources

        found = ", ".join(str(p) for p in embedded_sources())
        console.print(f"no SOURCE given: reading the code on this machine ({found})")
    progress = StageProgress(console, config)
    card = run_data_pipeline(config, overwrite=args.overwrite, on_stage=progress)
    if card is None:
        console.print(
            f"submitted to slurm; the jobs write {config.out}/dataset.json and card.md when done "
            f"(logs under {config.out}/work/logs)"
        )
        return 0
    print_summary(console, card, config.out)
    return 0


def print_summary(console, card: dict, out: str) -> None:
    from rich.table import Table

    table = Table(title=f"geex data → {out}", show_footer=True)
    totals = card["totals"]
    table.add_column("language", footer="total")
    for key, title in (("files", "files"), ("bytes", "MB"), ("tokens", "tokens")):
        footer = f"{totals[key] / 1e6:,.2f}" if key == "bytes" else f"{totals[key]:,}"
        table.add_column(title, justify="right", footer=footer)
    table.add_column(
        "validation tokens", justify="right", footer=f"{totals['validation_tokens']:,}"
    )
    for language, row in card["languages"].items():
        table.add_row(
            language,
            f"{row['files']:,}",
            f"{row['bytes'] / 1e6:,.2f}",
            f"{row['tokens']:,}",
            f"{row.get('validation_tokens', 0):,}",
        )
    console.print(table)
    removed = Table(title="removed, by stage and reason")
    for column in ("stage", "block", "reason"):
        removed.add_column(column)
    removed.add_column("files", justify="right")
    for entry in card["removed"]:
        for reason, n in entry.get("removed", {}).items():
            removed.add_row(entry["stage"], entry["block"], reason, f"{n:,}")
        for kind, n in entry.get("redacted", {}).items():
            removed.add_row(entry["stage"], entry["block"], f"redacted {kind}", f"{n:,}")
    if removed.row_count:
        console.print(removed)
    console.print(f"shards, tokenizer and card.md in {out}; train with: geex train --data {out}")
