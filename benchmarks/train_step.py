"""Training-step throughput: Geex against a plain PyTorch GPT of the same dimensions.

One step is forward, fp32 loss, backward and an AdamW step, on the same batch of random
tokens, at the same batch size, sequence length and dtype. The baseline (``plain_gpt.py``) is
what a PyTorch user writes: nanoGPT's fused QKV, SDPA, GELU, tied head and ``F.cross_entropy``
on fp32 logits, with ``n_layer + 1`` blocks so both run the same number of attending blocks
(Geex's top query layer is one of them); widths, heads, positions and the padded vocabulary are
equal and dropout is off. Both use the fused ``torch.optim.AdamW`` with the trainer's preset
hyperparameters and the same decay groups (Geex through its own ``build_optimizer``, as
``geex train`` does; the baseline through nanoGPT's grouping, ``plain_gpt.plain_adamw``).
What still differs is the models' own: exact GELU against Geex's FastGELU, and Geex's top
query layer against a plain block.

Steady state, not the first step: each model first takes ``--settle`` AdamW steps on random
targets at the preset's learning rate, so its weights have moved as in training. Some
activations and gradients then underflow to subnormal floats, which x86 cores compute up to
a hundred times slower; a freshly initialised model has none. ``--flush-denormals`` flushes
them to zero in the whole process (both models), as ``geex train`` does;
``--keep-freed-memory`` keeps freed memory in the process (both models), as ``geex train`` does
on a CPU (``geex.train.host_memory``; ``host_memory.py`` measures it alone).

The timed repeats alternate (Geex, plain, Geex, plain, ...) so the machine's noise falls on
both; each side's median is reported. Ratio > 1 means Geex trains faster. On a shared CPU,
only ratios from the same run compare. Measured numbers: docs/benchmarks.md.

    python benchmarks/train_step.py                      # tiny preset, fp32, eager
    python benchmarks/train_step.py --flush-denormals    # both models flush subnormals
    python benchmarks/train_step.py --compile            # both models under torch.compile
    python benchmarks/train_step.py --preset small --dtype bf16 --hf
"""

from __future__ import annotations

import argparse
import sys
import time


def parse_args() -> argparse.Namespace:
    from geex.presets import MODEL_PRESETS
    from side_by_side import DTYPES, add_machine_arguments

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="tiny", choices=sorted(MODEL_PRESETS))
    parser.add_argument("--batch-size", type=int, help="default: 8 for tiny, 2 otherwise")
    parser.add_argument("--seq-len", type=int, help="default: 256")
    parser.add_argument("--dtype", default="fp32", choices=sorted(DTYPES), help="bf16: autocast")
    parser.add_argument(
        "--compile",
        action="store_true",
        help="compiled rows: Geex's blocks as geex train compiles them, the whole plain GPT",
    )
    parser.add_argument(
        "--flush-denormals", action="store_true", help="flush subnormals to zero (both models)"
    )
    parser.add_argument(
        "--keep-freed-memory",
        action="store_true",
        help="keep freed memory in the process, as geex train does on a CPU (both models)",
    )
    parser.add_argument("--hf", action="store_true", help="add Hugging Face GPT-2 as a row")
    parser.add_argument(
        "--settle", type=int, default=8, help="untimed steps on random targets per model"
    )
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per model")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats per model")
    parser.add_argument("--steps", type=int, default=2, help="steps per timed repeat")
    add_machine_arguments(parser)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def main() -> None:
    # Before anything else touches torch: a thread of the OpenMP pool keeps the floating-point
    # mode it started with, so the flag must be set before the pool exists.
    if "--flush-denormals" in sys.argv:
        import torch

        torch.set_flush_denormal(True)
    args = parse_args()
    if args.keep_freed_memory:
        from geex.train.host_memory import keep_freed_memory

        assert keep_freed_memory(), "--keep-freed-memory needs glibc"
    run(args)


def run(args) -> None:
    import torch

    from geex.model import flops_per_token
    from geex.presets import model_preset
    from plain_gpt import plain_adamw
    from side_by_side import (
        DTYPES,
        compile_blocks,
        gpt2_twin,
        interleaved_times,
        machine,
        median,
        paired_ratio,
        preset_optim,
        print_table,
        spread,
        step_shape,
        training_side,
    )

    config = model_preset(args.preset)
    batch, seq = step_shape(args.preset)
    batch, seq = args.batch_size or batch, args.seq_len or seq
    dtype = DTYPES[args.dtype]
    if args.threads:
        torch.set_num_threads(args.threads)
    optim = preset_optim(args.preset)
    torch.manual_seed(args.seed)

    def random_batch():
        tokens = torch.randint(0, config.vocab_size, (batch, seq + 1))
        return tokens[:, :-1], tokens[:, 1:]

    def geex_loss(model, inputs, targets):
        # As geex train computes it: from the last hidden states, without the logits.
        return model(inputs, targets=targets)

    def plain_loss(model, inputs, targets):
        return model(inputs, targets)

    def hf_loss(model, inputs, targets):
        # GPT-2's own loss path: it shifts the labels and computes the loss in fp32.
        return model(input_ids=inputs, labels=inputs).loss

    def make_step(model, loss_of, optimizer):
        model.train()

        def step(inputs, targets):
            with torch.autocast("cpu", dtype=dtype, enabled=dtype != torch.float32):
                loss = loss_of(model, inputs, targets)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        return step

    def geex():
        return training_side("geex", config, optim, args.seed)

    def plain():
        return training_side("plain", config, optim, args.seed)

    def hf():
        model = gpt2_twin(config)
        return model, plain_adamw(model, optim)

    sides = {"Geex": (geex, geex_loss), "plain GPT": (plain, plain_loss)}
    if args.hf:
        sides["GPT-2 (HF)"] = (hf, hf_loss)
    steps = {}
    for name, (build, loss_of) in sides.items():
        model, optimizer = build()
        steps[name] = make_step(model, loss_of, optimizer)
        if args.compile:
            model, optimizer = build()
            if name == "Geex":
                compile_blocks(model)  # as geex train --compile does
            else:
                model = torch.compile(model)  # as a PyTorch user would
            steps[f"{name} (compiled)"] = make_step(model, loss_of, optimizer)

    settle_batches = [random_batch() for _ in range(args.settle)]
    inputs, targets = random_batch()
    warmup_s = {}
    for name, step in steps.items():
        start = time.perf_counter()
        for settle_inputs, settle_targets in settle_batches:
            step(settle_inputs, settle_targets)
        for _ in range(args.warmup):
            step(inputs, targets)
        warmup_s[name] = time.perf_counter() - start

    def repeat(step):
        return lambda: [step(inputs, targets) for _ in range(args.steps)]

    times = interleaved_times(
        {name: repeat(step) for name, step in steps.items()}, args.repeats, args.clock
    )
    tokens_per_repeat = batch * seq * args.steps
    rate = {name: [tokens_per_repeat / t for t in ts] for name, ts in times.items()}
    flops = flops_per_token(config, seq)

    rows = []
    for name in steps:
        baseline = "plain GPT (compiled)" if name.endswith("(compiled)") else "plain GPT"
        ratio = (
            "" if name.startswith("plain") else f"{paired_ratio(rate[name], rate[baseline]):.2f}x"
        )
        rows.append(
            [
                name,
                f"{median(rate[name]):,.0f}",
                spread(rate[name]),
                f"{median(times[name]) / args.steps * 1e3:,.0f}",
                f"{median(rate[name]) * flops / 1e9:,.1f}",
                ratio,
            ]
        )
    notes = [
        f"preset {args.preset}: {config.n_layer} blocks + top query layer vs "
        f"{config.n_attention_layers} blocks, d_model {config.d_model}, {config.n_head} heads, "
        f"vocab {config.padded_vocab_size}; batch {batch} x seq {seq}, {args.dtype}"
        f"{' (autocast)' if args.dtype != 'fp32' else ''}; AdamW lr {optim.lr}, betas "
        f"{optim.betas}, weight decay {optim.weight_decay}",
        f"subnormals {'flushed to zero' if args.flush_denormals else 'computed (the default)'}"
        f" in every model; each model settled by {args.settle} steps on random targets",
        f"{args.repeats} interleaved repeats of {args.steps} steps after {args.warmup} warm-up "
        f"steps; ratio = median over repeats of tokens/s / the plain GPT's in the same mode "
        f"(eager or compiled); {machine(args.clock)}",
        "GFLOP/s counts 6N + 12LHQT per token",
    ]
    if args.compile:
        compile_s = warmup_s["Geex (compiled)"] - warmup_s["Geex"]
        notes.append(
            f"torch.compile cost of Geex, paid once per process: {compile_s:.1f} s (compiled "
            f"minus eager, wall clock, over the same {args.settle + args.warmup} untimed steps)"
        )
    print_table(
        "Training step: forward + fp32 loss + backward + AdamW",
        ["model", "tokens/s (median)", "tokens/s (range)", "ms/step", "GFLOP/s", "ratio"],
        rows,
        notes,
    )


if __name__ == "__main__":
    main()
