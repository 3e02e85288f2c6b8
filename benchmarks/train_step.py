"""Training-step throughput: Geex against a Hugging Face GPT-2 of the same dimensions.

One step is forward, fp32 loss, backward and an AdamW step, on the same batch of random
tokens, at the same batch size, sequence length and dtype. GPT-2 gets ``n_layer + 1`` blocks
so both run the same number of attending blocks (Geex's top query layer is one of them);
widths, heads, positions and the (padded) vocabulary are equal, dropout is off in both and
both tie the output head to the word embeddings.

Warm-up steps are not timed. The timed repeats alternate (Geex, GPT-2, Geex, GPT-2, ...) so
the machine's noise falls on both; each side's median is reported. Read the last column:
ratio > 1 means Geex trains faster. On a shared CPU, only ratios from the same run compare.
Measured numbers, and how they were taken: docs/benchmarks.md.

    python benchmarks/train_step.py                      # tiny preset, fp32, eager
    python benchmarks/train_step.py --compile            # Geex's step under torch.compile
    python benchmarks/train_step.py --preset small --dtype bf16
"""

from __future__ import annotations

import argparse
import time

import torch

from geex.model import build_model, flops_per_token
from geex.model.loss import lm_loss
from geex.presets import MODEL_PRESETS, model_preset
from side_by_side import (
    DTYPES,
    add_machine_arguments,
    gpt2_twin,
    interleaved_times,
    machine,
    median,
    paired_ratio,
    print_table,
    spread,
)

HF = "GPT-2 (HF)"
DEFAULT_SHAPES = {"tiny": (8, 256), "small": (2, 256)}  # (batch, sequence) for a 2-core CPU


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="tiny", choices=sorted(MODEL_PRESETS))
    parser.add_argument("--batch-size", type=int, help="default: 8 for tiny, 2 otherwise")
    parser.add_argument("--seq-len", type=int, help="default: 256")
    parser.add_argument("--dtype", default="fp32", choices=sorted(DTYPES), help="bf16: autocast")
    parser.add_argument("--compile", action="store_true", help="torch.compile Geex's forward+loss")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per model")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats per model")
    parser.add_argument("--steps", type=int, default=2, help="steps per timed repeat")
    add_machine_arguments(parser)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def train_step(model, loss_of, optimizer, dtype):
    """A closure running one optimiser step; ``loss_of(model)`` returns the fp32 loss."""
    autocast = dtype != torch.float32

    def step():
        with torch.autocast("cpu", dtype=dtype, enabled=autocast):
            loss = loss_of(model)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def main() -> None:
    args = parse_args()
    config = model_preset(args.preset)
    batch, seq = DEFAULT_SHAPES.get(args.preset, (2, 256))
    batch, seq = args.batch_size or batch, args.seq_len or seq
    dtype = DTYPES[args.dtype]
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    tokens = torch.randint(0, config.vocab_size, (batch, seq + 1))
    inputs, targets = tokens[:, :-1], tokens[:, 1:]

    def geex_loss(model):
        return lm_loss(model(inputs), targets)

    def hf_loss(model):
        # GPT-2's own loss path: it shifts the labels and computes the loss in fp32.
        return model(input_ids=inputs, labels=inputs).loss

    def make_step(model, loss_of):
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
        return train_step(model.train(), loss_of, optimizer, dtype)

    steps = {"Geex": make_step(build_model(config, seed=args.seed), geex_loss)}
    if args.compile:
        # Same weights and optimiser. Forward and loss compile as one graph: the elementwise
        # work fuses into a few kernels, the cross-entropy's passes over the logits too.
        steps["Geex (compiled)"] = make_step(
            build_model(config, seed=args.seed), torch.compile(geex_loss)
        )
    steps[HF] = make_step(gpt2_twin(config), hf_loss)

    warmup_s = {}
    for name, step in steps.items():
        start = time.perf_counter()
        for _ in range(args.warmup):
            step()
        warmup_s[name] = time.perf_counter() - start

    def repeat(step):
        return lambda: [step() for _ in range(args.steps)]

    runs = {name: repeat(step) for name, step in steps.items()}
    times = interleaved_times(runs, args.repeats, args.clock)
    tokens_per_repeat = batch * seq * args.steps
    rate = {name: [tokens_per_repeat / t for t in ts] for name, ts in times.items()}
    flops = flops_per_token(config, seq)

    rows = []
    for name in steps:
        ratio = "" if name == HF else f"{paired_ratio(rate[name], rate[HF]):.2f}x"
        rows.append(
            [
                name,
                f"{median(rate[name]):,.0f}",
                spread(rate[name]),
                f"{median(times[name]) / args.steps * 1e3:,.0f}",
                f"{median(rate[name]) * flops / 1e9:,.1f}",
                "unknown on CPU",
                ratio,
            ]
        )
    notes = [
        f"preset {args.preset}: {config.n_layer} blocks + top query layer vs GPT-2 with "
        f"{config.n_attention_layers} blocks, d_model {config.d_model}, {config.n_head} heads, "
        f"vocab {config.padded_vocab_size}; batch {batch} x seq {seq}, {args.dtype}"
        f"{' (autocast)' if args.dtype != 'fp32' else ''}, AdamW",
        f"{args.repeats} interleaved repeats of {args.steps} steps after {args.warmup} warm-up "
        f"steps; ratio = median over repeats of Geex tokens/s / HF tokens/s; {machine(args.clock)}",
        "MFU: unknown on CPU (no peak FLOP/s table for CPUs); GFLOP/s counts 6N + 12LHQT per token",
    ]
    if args.compile:
        compile_s = warmup_s["Geex (compiled)"] - warmup_s["Geex"]
        notes.append(
            f"torch.compile cost, paid once per process: {compile_s:.1f} s (wall clock: compiled "
            f"minus eager Geex, over the same {args.warmup} warm-up steps)"
        )
    print_table(
        "Training step: forward + fp32 loss + backward + AdamW",
        ["model", "tokens/s (median)", "tokens/s (range)", "ms/step", "GFLOP/s", "MFU", "ratio"],
        rows,
        notes,
    )


if __name__ == "__main__":
    main()
