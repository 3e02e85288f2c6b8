"""``geex train``: train (or fine-tune) a CodeGeeX model on packed shards."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from geex.cli.flags import add_config_flags, flag_values, nested
from geex.errors import GeexError
from geex.train.config import TrainConfig


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train or fine-tune a model on `geex data` shards",
        description="Train a CodeGeeX model with CodeGeeX's recipe. Running the same command "
        "on the same --out folder resumes from its last checkpoint. Launch on several "
        "processes with torchrun (`torchrun --nproc_per_node 8 -m geex train ...`) or --nproc.",
    )
    parser.add_argument("--config", metavar="YAML", help="a file of TrainConfig fields")
    add_config_flags(parser, TrainConfig)
    parser.add_argument(
        "--nproc", type=int, help="launch this many local processes (torchrun) and train on them"
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="delete an earlier `geex train` run in --out (its model too) and start again",
    )
    parser.add_argument("--no-progress", action="store_true", help="no live progress bar")
    parser.set_defaults(handler=_train)


def config_from_args(args: argparse.Namespace):
    """YAML fields (if any), then flags on top; the preset's defaults fill the rest."""
    fields: dict = TrainConfig.read_yaml(args.config) if args.config else {}
    for key, value in nested(flag_values(TrainConfig, args)).items():
        if isinstance(value, dict) and isinstance(fields.get(key), dict):
            value = {**fields[key], **value}
        fields[key] = value
    return TrainConfig.from_dict(fields)


STOPPED_EARLY = 3  # exit status of a run stopped by a signal, its checkpoint saved


def _train(args: argparse.Namespace) -> int:
    if args.nproc is not None and "LOCAL_RANK" not in os.environ:
        return _launch(args.nproc)
    from geex.train.trainer import train

    config = config_from_args(args)
    result = train(config, show_progress=not args.no_progress, overwrite=args.overwrite)
    if int(os.environ.get("RANK", "0")) == 0:
        state = (
            "stopped (checkpoint saved; run again to resume)" if result.stopped_early else "done"
        )
        loss = f", last loss {result.last_loss:.4f}" if result.last_loss is not None else ""
        print(
            f"{state}: {result.steps} steps, {result.tokens:,} tokens{loss}; run folder {result.out}"
        )
        _print_final_validation(result.out)
    return STOPPED_EARLY if result.stopped_early else 0


def _print_final_validation(run_folder) -> None:
    from geex.train.monitor import final_validation, read_metrics, validation_line

    metrics = run_folder / "metrics.jsonl"
    validation = final_validation(read_metrics(metrics)) if metrics.is_file() else None
    if validation is not None:
        print(validation_line(validation))


def _launch(nproc: int) -> int:
    """Re-run this very command under torchrun with ``nproc`` local processes; the exit
    status is the first failed process's (each prints its own error)."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    if nproc < 1:
        raise GeexError(f"--nproc must be >= 1, got {nproc}")
    argv = [a for a in sys.argv[1:] if not a.startswith("--nproc")]
    if "--nproc" in sys.argv:
        i = sys.argv.index("--nproc")
        argv = sys.argv[1:i] + sys.argv[i + 2 :]
    launch = ["--standalone", f"--nproc_per_node={nproc}", "-m", "geex", *argv]
    # A failed process has printed its one-line error (one killed by a signal is named below);
    # the launcher's log of the same failure (a line per process, pid and binary) buries it.
    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)
    try:
        run(get_args_parser().parse_args(launch))
    except ChildFailedError as failed:
        rank, first = failed.get_first_failure()
        if first.exitcode < 0:  # killed by a signal (the OOM killer's SIGKILL): it said nothing
            raise GeexError(f"process {rank} of {nproc} died: {first.message}") from None
        return first.exitcode
    return 0
