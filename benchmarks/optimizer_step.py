"""A training step under Muon against the same step under AdamW: what Muon costs per step.

The tiny preset trains with Muon (``optimizer: muon``): Newton-Schulz iterations on every
hidden matrix, each step, on top of AdamW's update of the embeddings, biases and LayerNorms.
This times Geex's whole step (forward, backward, optimizer) with each optimizer, both
models built from the same seed and settled by a few steps on random targets, interleaved
(AdamW, Muon, AdamW, ...), and the optimizer's step alone; the ratio is Muon's tokens/s over
AdamW's. Muon's gain is in what each token teaches (docs/training.md), not measured here.

    python benchmarks/optimizer_step.py                          # tiny, bf16 as geex train runs it here
    python benchmarks/optimizer_step.py --dtype fp32 --threads 1 --clock cpu
"""

from __future__ import annotations

import argparse
import dataclasses

import torch


def parse_args() -> argparse.Namespace:
    from side_by_side import DTYPES, add_machine_arguments

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--dtype", default="bf16", choices=sorted(DTYPES))
    parser.add_argument("--settle", type=int, default=5, help="untimed steps per optimizer")
    parser.add_argument("--repeats", type=int, default=9, help="timed steps per optimizer")
    add_machine_arguments(parser)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from geex.model import build_model
    from geex.presets import model_preset
    from geex.train.optim import build_optimizer
    from side_by_side import (
        DTYPES,
        interleaved_times,
        machine,
        median,
        paired_ratio,
        preset_optim,
        print_table,
        random_token_step,
        spread,
        step_shape,
    )

    config = model_preset(args.preset)
    batch, seq = step_shape(args.preset)
    adamw = preset_optim(args.preset)
    optims = {"AdamW": adamw, "Muon": dataclasses.replace(adamw, optimizer="muon")}
    steps, optimizer_steps = {}, {}
    for name, optim in optims.items():
        model = build_model(config, seed=0)
        model.train()
        optimizer = build_optimizer(model, optim)
        # Gradients zeroed, not freed: the optimizer alone then steps on zero gradients, which
        # costs what any gradients do.
        step = random_token_step(model, optimizer, config.vocab_size, batch, seq,
                                 DTYPES[args.dtype], set_to_none=False)  # fmt: skip
        for _ in range(args.settle):
            step()
        steps[name] = step
        optimizer_steps[f"{name}, optimizer alone"] = optimizer.step
    times = interleaved_times({**steps, **optimizer_steps}, args.repeats, args.clock)
    tokens = batch * seq
    rows = []
    for name in steps:
        whole, alone = times[name], times[f"{name}, optimizer alone"]
        ratio = "" if name == "AdamW" else f"{paired_ratio(times['AdamW'], whole):.2f}x"
        rows.append([name, f"{tokens / median(whole):,.0f}", spread([tokens / t for t in whole]),
                     f"{median(alone) * 1e3:.1f}", ratio])  # fmt: skip
    print_table(
        f"{args.preset}, {args.dtype}, {batch} x {seq} tokens a step, {args.repeats} repeats",
        ["optimizer", "step tokens/s", "range", "optimizer step ms", "Muon / AdamW"],
        rows,
        [machine(args.clock), "ratio: median of per-repeat ratios of tokens/s, interleaved"],
    )


if __name__ == "__main__":
    main()
