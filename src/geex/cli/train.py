"""``geex train``: train (or fine-tune) a CodeGeeX model on packed shards."""

from __future__ import annotations

import argparse
import os
import sys


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train or fine-tune a model on `geex data` shards",
        description="Train a CodeGeeX model with CodeGeeX's recipe. Running the same command "
        "on the same --out folder resumes from its last checkpoint. Launch on several "
        "processes with torchrun (`torchrun --nproc_per_node 8 -m geex train ...`) or --nproc.",
    )
    parser.add_argument("--config", metavar="YAML", help="a file of TrainConfig fields")
    parser.add_argument("--data", help="dataset folder written by `geex data`")
    parser.add_argument("--out", help="run folder (checkpoints, metrics.jsonl, model/)")
    parser.add_argument("--preset", help="model preset (default tiny)")
    parser.add_argument("--init-from", metavar="DIR", help="fine-tune from a Geex checkpoint")
    parser.add_argument("--max-steps", type=int)
    parser.add_argument("--max-tokens", type=int)
    parser.add_argument("--max-time", type=float, metavar="SECONDS")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--seq-len", type=int)
    parser.add_argument("--global-batch-tokens", type=int)
    parser.add_argument("--micro-batch-size", type=int)
    parser.add_argument("--dropout", type=float)
    parser.add_argument("--lr", type=float, help="peak learning rate")
    parser.add_argument("--min-lr", type=float, help="the floor the cosine decays to")
    parser.add_argument("--warmup-steps", type=int)
    parser.add_argument("--decay-steps", type=int, help="cosine length (default: the run's)")
    parser.add_argument("--weight-decay", type=float)
    parser.add_argument("--grad-clip", type=float, help="global norm; 0 disables")
    parser.add_argument("--precision", choices=["fp32", "bf16", "fp16"])
    parser.add_argument("--reset-at-documents", action="store_true", default=None)
    parser.add_argument("--checkpoint-every", type=int)
    parser.add_argument("--keep-checkpoints", type=int)
    parser.add_argument("--eval-every", type=int, help="steps between validations; 0: never")
    parser.add_argument("--eval-tokens", type=int, help="validation tokens per language")
    parser.add_argument("--device", help="auto, cpu, cuda")
    parser.add_argument("--tp", type=int, help="tensor-parallel degree")
    parser.add_argument("--fsdp", action="store_true", default=None, help="shard with FSDP2")
    parser.add_argument("--activation-checkpointing", action="store_true", default=None)
    parser.add_argument("--compile", action="store_true", default=None)
    parser.add_argument(
        "--nproc", type=int, help="launch this many local processes (torchrun) and train on them"
    )
    parser.add_argument("--no-progress", action="store_true", help="no live progress bar")
    parser.set_defaults(handler=_train)


_TOP_LEVEL = (
    "data",
    "out",
    "preset",
    "init_from",
    "max_steps",
    "max_tokens",
    "max_time",
    "seed",
    "seq_len",
    "global_batch_tokens",
    "micro_batch_size",
    "precision",
    "reset_at_documents",
    "checkpoint_every",
    "keep_checkpoints",
    "eval_every",
    "device",
)
_OPTIM = ("lr", "min_lr", "warmup_steps", "decay_steps", "weight_decay", "grad_clip")
_PARALLEL = ("tp", "fsdp", "activation_checkpointing", "compile")


def config_from_args(args: argparse.Namespace):
    """YAML fields (if any), then flags on top; the preset's defaults fill the rest."""
    from geex.train.config import TrainConfig

    fields: dict = {}
    if args.config:
        fields = TrainConfig.read_yaml(args.config)
    fields.update(
        {name: getattr(args, name) for name in _TOP_LEVEL if getattr(args, name) is not None}
    )
    for section, names in (("optim", _OPTIM), ("parallel", _PARALLEL)):
        given = {name: getattr(args, name) for name in names if getattr(args, name) is not None}
        fields[section] = {**fields.get(section, {}), **given}
    return TrainConfig.from_dict(fields)


STOPPED_EARLY = 3  # exit status of a run stopped by a signal, its checkpoint saved


def _train(args: argparse.Namespace) -> int:
    if args.nproc and "LOCAL_RANK" not in os.environ:
        return _launch(args.nproc)
    from geex.train.trainer import train

    config = config_from_args(args)
    result = train(config, show_progress=not args.no_progress)
    if int(os.environ.get("RANK", "0")) == 0:
        state = (
            "stopped (checkpoint saved; run again to resume)" if result.stopped_early else "done"
        )
        loss = f", last loss {result.last_loss:.4f}" if result.last_loss is not None else ""
        print(
            f"{state}: {result.steps} steps, {result.tokens:,} tokens{loss}; run folder {result.out}"
        )
    return STOPPED_EARLY if result.stopped_early else 0


def _launch(nproc: int) -> int:
    """Re-run this very command under torchrun with ``nproc`` local processes."""
    from torch.distributed.run import main as torchrun

    argv = [a for a in sys.argv[1:] if not a.startswith("--nproc")]
    if "--nproc" in sys.argv:
        i = sys.argv.index("--nproc")
        argv = sys.argv[1:i] + sys.argv[i + 2 :]
    torchrun(["--standalone", f"--nproc_per_node={nproc}", "-m", "geex", *argv])
    return 0
