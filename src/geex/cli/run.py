"""``geex run``: local code -> data -> tokenizer -> trained model -> evaluation -> report."""

from __future__ import annotations

import argparse

from geex.cli.flags import add_config_flags, flag_values
from geex.errors import GeexError
from geex.pipeline.config import RunConfig, load_run_config, run_config
from geex.pipeline.stages import STAGES


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "run",
        help="build a code model end to end: data, tokenizer, training, evaluation, report",
        description="Collect code (default: the code on this machine), train a tokenizer and a "
        "model for a budget, evaluate it with sandboxed execution, export it and write "
        "OUT/report.html. Run it again on the same --out folder to finish an interrupted run: "
        "finished stages are skipped. Give a run file (CONFIG.yaml) for real runs.",
    )
    parser.add_argument(
        "sources",
        nargs="*",
        metavar="CONFIG.yaml | SOURCE",
        help="a run file, or code folders, archives, git URLs and datasets (as for geex data)",
    )
    add_config_flags(parser, RunConfig)
    parser.add_argument(
        "--stage",
        action="append",
        choices=STAGES,
        help="run only this stage (repeatable); under torchrun: --stage train",
    )
    parser.set_defaults(handler=_run)


def config_from_args(args: argparse.Namespace):
    """The run file (or the sources) with the flags given replacing its fields."""
    overrides = flag_values(RunConfig, args)
    sources = list(args.sources)
    if sources and sources[0].lower().endswith((".yaml", ".yml")):
        if len(sources) > 1:
            raise GeexError("give either a run file or sources, not both")
        return load_run_config(sources[0], **overrides)
    if sources:
        overrides["data.sources"] = sources
    return run_config({}, **overrides)


def _run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from geex.pipeline import RunInterrupted, run_pipeline

    console = Console(stderr=True, soft_wrap=True)  # long paths stay whole in logs
    config = config_from_args(args)
    try:
        result = run_pipeline(config, console=console, only=args.stage)
    except RunInterrupted as stop:
        console.print(f"[yellow]stopped:[/yellow] {stop}")
        return 3
    except KeyboardInterrupt:
        console.print(
            f"[yellow]interrupted:[/yellow] run the same command again to continue; the "
            f"finished stages in {config.out} are kept"
        )
        return 130
    if args.stage and "report" not in args.stage:
        console.print(f"stages {', '.join(args.stage)} done in {config.out}")
        return 0
    print_summary(console, result)
    return 0


def print_summary(console, result) -> None:
    from rich.table import Table

    from geex.pipeline.stage_export import ExportStage
    from geex.pipeline.stage_train import TrainStage
    from geex.pipeline.stages import stage_summary

    stages = result.state.stages
    table = Table(title=f"geex run → {result.out}")
    for column in ("stage", "time", "result"):
        table.add_column(column, justify="right" if column == "time" else "left")
    for name, record in stages.items():
        table.add_row(name, f"{record['seconds']:,.0f} s", stage_summary(name, record))
    console.print(table)
    model, hf = result.out / TrainStage.model, result.out / ExportStage.folder
    console.print(f"report:  [bold]{result.report}[/bold] (and report.md)")
    console.print(f"model:   {model} (Geex), {hf} (Hugging Face)")
    console.print("next:")
    for line in (
        f"geex generate --model {model} --language python --prompt 'def add(a, b):'",
        f"geex serve --model {model}",
        f"geex eval humanevalx --model {model} --data HUMANEVAL_X_DIR",
        f"geex run --out {result.out}-2h --budget 2h   # longer, in a new folder",
        f"geex plot {result.out / TrainStage.folder}",
    ):
        console.print(f"  {line}")
