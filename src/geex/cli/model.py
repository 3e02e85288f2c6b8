"""`geex model info`: the size and cost of a preset, a config file or a checkpoint."""

from __future__ import annotations

import argparse

from geex.errors import GeexError


def register(subparsers) -> None:
    parser = subparsers.add_parser("model", help="inspect model presets and checkpoints")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    info = verbs.add_parser(
        "info",
        help="parameters, weight memory and FLOPs per token",
        description="Print the exact parameter count, the memory of the weights per precision "
        "and the training FLOPs per token (6N + 12·L·H·Q·T) of a model.",
    )
    source = info.add_mutually_exclusive_group(required=True)
    source.add_argument("--preset", help="a model preset name (see `geex model presets`)")
    source.add_argument("--model", metavar="DIR", help="a Geex checkpoint folder")
    info.add_argument(
        "--seq-len", type=int, help="sequence length for FLOPs (default: the model's)"
    )
    info.add_argument(
        "--plan",
        metavar="KEY=VALUE,...",
        help="also print the memory per GPU of training under this layout, e.g. tp=8,dp=192 "
        "(keys: tp, dp, fsdp=1|0, mbs, seq, ac=1|0|full|none|selective-op|selective-N, sp=1|0, "
        "precision, accum; keys not given: what "
        "`geex train --preset` would use; see docs/training.md)",
    )
    info.set_defaults(handler=_info)
    presets = verbs.add_parser("presets", help="list the model presets")
    presets.set_defaults(handler=_presets)


def _config(args: argparse.Namespace):
    if args.preset:
        from geex.presets import model_preset

        return model_preset(args.preset)
    from geex.model.checkpoint import read_config

    return read_config(args.model)


def _info(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from geex.model.codegeex import flops_per_token
    from geex.model.info import human_bytes, human_count, model_info

    config = _config(args)
    plan = None
    if args.plan is not None:
        from geex.train.memory_plan import memory_plan, parse_plan, preset_defaults

        defaults = preset_defaults(args.preset) if args.preset else None
        plan = memory_plan(config, parse_plan(args.plan, defaults))  # refuse it before printing
    if args.seq_len is not None and not 0 < args.seq_len <= config.max_seq_len:
        raise GeexError(f"--seq-len must be in 1..{config.max_seq_len}, got {args.seq_len}")
    info = model_info(config)
    seq_len = args.seq_len or config.max_seq_len
    flops = flops_per_token(config, seq_len)
    console = Console()
    name = args.preset or args.model
    shape = Table(title=f"{name}", show_header=False, title_justify="left")
    shape.add_row("blocks", f"{config.n_layer} + the top query layer")
    shape.add_row("hidden / heads / FFN", f"{config.d_model} / {config.n_head} / {config.d_ffn}")
    shape.add_row("positions", f"{config.max_seq_len:,}")
    shape.add_row("vocabulary", f"{config.vocab_size:,} padded to {config.padded_vocab_size:,}")
    shape.add_row("parameters", f"{info.params:,} ({human_count(info.params)})")
    shape.add_row("  of which embeddings", f"{info.embedding_params:,}")
    shape.add_row(
        f"FLOPs per token (train, seq {seq_len})", f"{flops:,} ({human_count(flops)}FLOP)"
    )
    shape.add_row("FLOPs per token (forward)", f"{flops // 3:,} ({human_count(flops // 3)}FLOP)")
    console.print(shape)
    memory = Table(title="weights in memory", title_justify="left")
    memory.add_column("precision")
    memory.add_column("bytes", justify="right")
    memory.add_column("", justify="right")
    for precision, nbytes in info.weight_bytes.items():
        memory.add_row(precision, f"{nbytes:,}", human_bytes(nbytes))
    console.print(memory)
    if plan is not None:
        console.print(_plan_table(plan))
    return 0


def _plan_table(plan):
    from rich.table import Table

    from geex.model.info import human_bytes
    from geex.train.memory_plan import GPU_BYTES, KEPT, STEP, WORKING

    table = Table(
        title=f"memory per GPU: {plan.plan.describe()}",
        title_justify="left",
        caption="The peak leaves out the CUDA context, NCCL buffers and allocator "
        "fragmentation (usually a few GiB).",
        caption_justify="left",
    )
    for column, justify in (("", "left"), ("when", "left"), ("bytes", "right"), ("", "right")):
        table.add_column(column, justify=justify)
    table.add_column("how", ratio=1)
    for row in plan.rows:
        table.add_row(row.name, row.phase, f"{row.nbytes:,}", human_bytes(row.nbytes), row.how)
    table.add_section()
    for name, nbytes, how in (
        (f"peak in {WORKING}", plan.forward_backward_peak, f"{KEPT} + {WORKING}"),
        (f"peak in {STEP}", plan.optimizer_step_peak, f"{KEPT} + {STEP}"),
    ):
        table.add_row(name, "", f"{nbytes:,}", human_bytes(nbytes), how)
    spare = GPU_BYTES - plan.peak
    verdict = (
        f"fits, {human_bytes(spare)} to spare" if spare > 0 else f"short by {human_bytes(-spare)}"
    )
    table.add_row(
        "[bold]peak", "", f"[bold]{plan.peak:,}", f"[bold]{human_bytes(plan.peak)}",
        f"[bold]{100 * plan.peak / GPU_BYTES:.0f}% of an 80 GiB A100/H100: {verdict}",
    )  # fmt: skip
    return table


def _presets(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from geex.model.info import human_count, model_info
    from geex.presets import MODEL_PRESETS

    table = Table(title="model presets", title_justify="left")
    for column in ("name", "blocks", "hidden", "heads", "positions", "vocab", "parameters"):
        table.add_column(column, justify="left" if column == "name" else "right")
    for name, config in MODEL_PRESETS.items():
        table.add_row(
            name,
            f"{config.n_layer}+1",
            str(config.d_model),
            str(config.n_head),
            str(config.max_seq_len),
            f"{config.padded_vocab_size:,}",
            human_count(model_info(config).params),
        )
    Console().print(table)
    return 0
