"""``geex run``: local code -> tokenizer -> trained model -> samples, in one command."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "run",
        help="build a code model from the code on this machine, end to end",
        description="Pack local code (default: this Python's standard library), train a "
        "tokenizer and the tiny model for a budget, and write sample completions. Run it "
        "again on the same --out folder to finish an interrupted run.",
    )
    parser.add_argument("sources", nargs="*", metavar="SOURCE", help="code folders or files")
    parser.add_argument("--out", default="runs/geex", help="run folder (default: %(default)s)")
    parser.add_argument(
        "--budget", default="10m", help="training time (10m, 2h) or tokens ('2M tokens')"
    )
    parser.add_argument("--preset", default="tiny", help="model preset (default: %(default)s)")
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from geex.pipeline import parse_budget, run_pipeline

    console = Console(stderr=True)
    made = run_pipeline(
        args.out,
        budget=parse_budget(args.budget),
        sources=[Path(s) for s in args.sources] or None,
        preset=args.preset,
        console=console,
    )
    console.rule("[bold green]done")
    console.print(f"model:   {made['model']}")
    console.print(f"samples: {made['samples']}")
    console.print("next:")
    console.print(
        f"  geex generate --model {made['model']} --language python --prompt 'def add(a, b):'"
    )
    console.print(f"  geex plot {made['run']}")
    console.print(f"  geex convert to-hf {made['model']} {Path(args.out) / 'hf'}")
    return 0
