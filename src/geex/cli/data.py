"""``geex data``: collect, clean, deduplicate, decontaminate, tag and shard source code."""

from __future__ import annotations

import argparse
import os

from geex.errors import GeexError

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
    parser.add_argument("--out", required=True, help="output folder (shards, tokenizer, card)")
    parser.add_argument("--tokenizer", help="tokenizer to use (default: train one on the corpus)")
    parser.add_argument(
        "--filters",
        default="codegeex",
        choices=["codegeex", "codex", "codeparrot", "starcoder", "none"],
        help="rule preset for dropping files (default: codegeex)",
    )
    dedup = parser.add_mutually_exclusive_group()
    dedup.add_argument(
        "--dedup", default="both", choices=["exact", "near", "both"], help="default: both"
    )
    dedup.add_argument("--no-dedup", dest="dedup", action="store_const", const="none")
    parser.add_argument(
        "--decontaminate",
        nargs="+",
        default=[],
        metavar="BENCH",
        help="drop files containing these benchmarks: humanevalx:DIR (HumanEval-X's "
        "humaneval_<lang>.jsonl files), embedded (Geex's evaluation set) or FILE.jsonl",
    )
    parser.add_argument(
        "--no-pii", dest="pii", action="store_false", help="keep secrets as they are"
    )
    parser.add_argument(
        "--workers", type=int, default=os.cpu_count() or 1, help="processes at once"
    )
    parser.add_argument("--tasks", type=int, help="parallel pieces of work (default: --workers)")
    parser.add_argument("--validation-fraction", type=float, default=0.05)
    parser.add_argument("--vocab-size", type=int, default=8192, help="when training a tokenizer")
    parser.add_argument(
        "--dataset-layout", default="auto", choices=["auto", "the-stack", "codeparrot"]
    )
    parser.add_argument(
        "--languages",
        type=lambda text: [w.strip() for w in text.split(",") if w.strip()],
        help="keep only these languages from local sources, e.g. python,go",
    )
    parser.add_argument(
        "--per-language-mb", type=float, help="read at most this much of each language"
    )
    parser.add_argument("--max-file-bytes", type=int, help="readers skip larger files (8 MiB)")
    repos = parser.add_argument_group("git and GitHub sources")
    repos.add_argument("--max-repo-bytes", type=int, help="skip repositories larger on disk")
    repos.add_argument("--min-stars", type=int, help="skip repositories with fewer stars")
    repos.add_argument("--repo-metadata", help="JSONL/CSV of repositories with stars and size")
    repos.add_argument("--github-max-repos", type=int, default=100)
    repos.add_argument("--github-api-url", default="https://api.github.com")
    parser.add_argument(
        "--overwrite", action="store_true", help="delete an earlier `geex data` OUT and start again"
    )
    cluster = parser.add_argument_group("cluster executors")
    cluster.add_argument("--executor", default="local", choices=["local", "slurm", "ray"])
    cluster.add_argument("--partition", help="slurm partition")
    cluster.add_argument("--time", default="24:00:00", help="slurm time limit per job")
    cluster.add_argument("--cpus-per-task", type=int, default=1)
    cluster.add_argument("--mem-per-cpu-gb", type=float, default=2)
    cluster.add_argument("--env-command", help="slurm: shell line run before each job")
    cluster.add_argument("--sbatch-arg", action="append", default=[], metavar="KEY=VALUE")
    cluster.add_argument(
        "--ray-address", help="ray cluster to join (default: RAY_ADDRESS or local)"
    )
    parser.set_defaults(handler=_run)


def config_from_args(args: argparse.Namespace):
    from geex.data.embedded import EMBEDDED_LANGUAGES, PER_LANGUAGE_BYTES
    from geex.data.pipeline import DataConfig

    sbatch = {}
    for item in args.sbatch_arg:
        key, sep, value = item.partition("=")
        if not sep:
            raise GeexError(f"--sbatch-arg wants KEY=VALUE; got {item!r}")
        sbatch[key] = value
    per_language_bytes = None if args.sources else PER_LANGUAGE_BYTES
    if args.per_language_mb is not None:
        per_language_bytes = int(args.per_language_mb * 2**20)
    languages = args.languages
    if languages is None and not args.sources:
        languages = list(EMBEDDED_LANGUAGES)
    if languages:
        from geex.languages import get_language

        languages = [get_language(name).key for name in languages]
    return DataConfig(
        out=args.out,
        sources=list(args.sources),
        tokenizer=args.tokenizer,
        filters=args.filters,
        dedup=args.dedup,
        decontaminate=list(args.decontaminate),
        pii=args.pii,
        tasks=args.tasks,
        workers=args.workers,
        validation_fraction=args.validation_fraction,
        vocab_size=args.vocab_size,
        dataset_layout=args.dataset_layout,
        max_file_bytes=args.max_file_bytes,
        git_max_repo_bytes=args.max_repo_bytes,
        min_stars=args.min_stars,
        repo_metadata=args.repo_metadata,
        github_max_repos=args.github_max_repos,
        github_api_url=args.github_api_url,
        per_language_bytes=per_language_bytes,
        languages=languages,
        executor=args.executor,
        partition=args.partition,
        time=args.time,
        cpus_per_task=args.cpus_per_task,
        mem_per_cpu_gb=args.mem_per_cpu_gb,
        sbatch_args=sbatch,
        env_command=args.env_command,
        ray_address=args.ray_address,
    )


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
