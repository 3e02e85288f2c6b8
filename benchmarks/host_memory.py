"""Training steps with freed host memory kept in the process, against glibc's defaults.

``geex train`` on a CPU has glibc serve every block from its heap and keep it
(``geex.train.host_memory.keep_freed_memory``), so that a step's activations reuse the pages
of the step before instead of faulting in fresh ones. A process's allocator cannot be set back
to glibc's default (whose mmap threshold moves as blocks are freed) once changed, so each side
runs in processes of its own, alternating (first side, second side, first, ...) so that the
machine's noise falls on both. Each process builds its model, takes ``--settle`` AdamW steps
on random targets (steady state), then times ``--steps`` steps and counts the page faults and
kernel time they took.

The sides: Geex's step with glibc's defaults, then kept (the default); ``--model plain``, the
plain PyTorch GPT of ``train_step.py`` both ways (the setting is the process's, not the
model's); ``--as-run``, each as it runs: the plain GPT with glibc's defaults, as a PyTorch
script runs, against Geex's step as ``geex train`` runs it. ``--compile`` compiles both
sides as ``train_step.py --compile`` does (Geex block by block, the plain GPT whole); the
compilation falls in the untimed settling steps.

    python benchmarks/host_memory.py                       # tiny, 3 rounds
    python benchmarks/host_memory.py --preset small --rounds 3 --settle 3 --steps 6
    python benchmarks/host_memory.py --as-run --preset small --rounds 3 --settle 3 --steps 6
    python benchmarks/host_memory.py --as-run --compile                     # both compiled
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

MEMORY = ("default", "kept")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--model", default="geex", choices=("geex", "plain"))
    parser.add_argument(
        "--as-run",
        action="store_true",
        help="the plain GPT with glibc's defaults against Geex kept",
    )
    parser.add_argument(
        "--compile",
        action="store_true",
        help="compile both sides: Geex block by block as geex train does, the plain GPT whole",
    )
    parser.add_argument("--rounds", type=int, default=3, help="processes per side")
    parser.add_argument("--settle", type=int, default=10, help="untimed steps per process")
    parser.add_argument("--steps", type=int, default=40, help="timed steps per process")
    parser.add_argument("--child", choices=MEMORY, help=argparse.SUPPRESS)
    return parser.parse_args()


def child(args: argparse.Namespace) -> None:
    """One side's process: print its timed steps' tokens/s, page faults, kernel seconds and
    peak memory."""
    import torch

    from geex.presets import model_preset
    from geex.train.host_memory import keep_freed_memory
    from side_by_side import (
        compile_blocks,
        preset_optim,
        random_token_step,
        step_shape,
        training_side,
    )

    if args.child == "kept":
        assert keep_freed_memory(), "this C library is not glibc"
    config = model_preset(args.preset)
    batch, seq = step_shape(args.preset)
    model, optimizer = training_side(args.model, config, preset_optim(args.preset), seed=0)
    if args.compile and args.model == "geex":
        compile_blocks(model)  # as geex train --compile does
    elif args.compile:
        model = torch.compile(model)  # as a PyTorch user would
    model.train()
    step = random_token_step(model, optimizer, config.vocab_size, batch, seq)
    for _ in range(args.settle):
        step()
    before, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    for _ in range(args.steps):
        step()
    seconds, after = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({
        "tokens_per_s": batch * seq * args.steps / seconds,
        "page_faults": after.ru_minflt - before.ru_minflt,
        "kernel_s": after.ru_stime - before.ru_stime,
        "peak_mib": after.ru_maxrss / 1024,
    }))  # fmt: skip


def main() -> None:
    args = parse_args()
    if args.child:
        child(args)
        return
    from side_by_side import machine, median, paired_ratio, print_table

    if args.as_run:
        sides = [("plain", "default"), ("geex", "kept")]
    else:
        sides = [(args.model, memory) for memory in MEMORY]
    results: dict[tuple[str, str], list[dict]] = {side: [] for side in sides}
    for _ in range(args.rounds):
        for model, memory in sides:
            command = [sys.executable, __file__, "--child", memory, "--preset", args.preset,
                       "--model", model, "--settle", str(args.settle),
                       "--steps", str(args.steps), *(["--compile"] if args.compile else [])]  # fmt: skip
            out = subprocess.run(command, capture_output=True, text=True, check=True,
                                 cwd=Path(__file__).parent).stdout  # fmt: skip
            results[model, memory].append(json.loads(out.strip().splitlines()[-1]))
    rate = {side: [r["tokens_per_s"] for r in results[side]] for side in sides}
    first, second = sides
    rows = [
        [
            f"{'Geex' if side[0] == 'geex' else 'plain GPT'}, {side[1]}",
            f"{median(rate[side]):,.0f}",
            f"{median([r['page_faults'] for r in results[side]]):,.0f}",
            f"{median([r['kernel_s'] for r in results[side]]):.2f}",
            f"{median([r['peak_mib'] for r in results[side]]):,.0f}",
            "" if side == first else f"{paired_ratio(rate[second], rate[first]):.2f}x",
        ]
        for side in sides
    ]
    print_table(
        f"{args.preset}{', compiled' if args.compile else ''}: {args.steps} steps after "
        f"{args.settle}, {args.rounds} processes per side",
        ["model, glibc malloc", "tokens/s", "page faults", "kernel s", "peak MiB", "ratio"],
        rows,
        [machine(), "ratio: the second row's tokens/s over the first's, median of the rounds"],
    )


if __name__ == "__main__":
    main()
