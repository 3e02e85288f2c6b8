"""Greedy decoding latency with a KV cache: Geex against a Hugging Face GPT-2 of the same size.

Both models continue the same random prompts (``--prompt-len`` tokens, every row the same
length) by exactly ``--new-tokens`` tokens, greedily, with their KV caches: Geex through
``geex.model.generation.generate``, GPT-2 through ``model.generate(do_sample=False,
use_cache=True)``. No end-of-sequence id is set in either, so neither stops early; the script
checks the token counts. GPT-2 gets ``n_layer + 1`` blocks so both run the same number of
attending blocks (Geex's top query layer is one of them); the weights are random, so the two
models' tokens differ, their work does not.

Reported: milliseconds per new token, the whole call (prompt prefill included) divided by the
new tokens, at each batch size, the median of interleaved repeats (Geex, GPT-2, Geex, ...).
Read the ratio column: HF ms / Geex ms, > 1 means Geex decodes faster. On a shared CPU, only
ratios from the same run compare. Measured numbers, and how they were taken: docs/benchmarks.md.

    python benchmarks/decode.py                  # tiny preset, batch 1 and 8, fp32
    python benchmarks/decode.py --compile        # also Geex with a compiled decode step
    python benchmarks/decode.py --preset small --batch-sizes 1
"""

from __future__ import annotations

import argparse
import time

import torch

from geex.model import build_model
from geex.model.generation import generate
from geex.model.sampling import SamplingConfig
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


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="tiny", choices=sorted(MODEL_PRESETS))
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--prompt-len", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--dtype", default="fp32", choices=sorted(DTYPES), help="weights' dtype")
    parser.add_argument("--compile", action="store_true", help="add Geex with a compiled step")
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls per model")
    parser.add_argument("--repeats", type=int, default=7, help="timed calls per model")
    add_machine_arguments(parser)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    config = model_preset(args.preset)
    dtype = DTYPES[args.dtype]
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.prompt_len + args.new_tokens > config.max_seq_len:
        raise SystemExit(f"prompt + new tokens exceed the context of {config.max_seq_len}")
    geex = build_model(config, seed=args.seed, dtype=dtype).eval()
    hf = gpt2_twin(config).to(dtype).eval()
    sampling = SamplingConfig(max_new_tokens=args.new_tokens)
    torch.manual_seed(args.seed)

    rows, notes = [], []
    for batch in args.batch_sizes:
        prompts = torch.randint(0, config.vocab_size, (batch, args.prompt_len))
        prompt_lists = prompts.tolist()

        def run_geex(compile_step=False, prompt_lists=prompt_lists):
            out = generate(geex, prompt_lists, sampling, compile_step=compile_step)
            assert all(len(row[0]) == args.new_tokens for row in out)

        def run_hf(prompts=prompts, batch=batch):
            out = hf.generate(
                prompts,
                attention_mask=torch.ones_like(prompts),
                max_new_tokens=args.new_tokens,
                min_new_tokens=args.new_tokens,
                do_sample=False,
                use_cache=True,
                eos_token_id=None,
                pad_token_id=0,
            )
            assert out.shape == (batch, args.prompt_len + args.new_tokens)

        runs = {"Geex": run_geex, "GPT-2 (HF)": run_hf}
        if args.compile:
            runs["Geex (compiled step)"] = lambda run_geex=run_geex: run_geex(compile_step=True)
        warmup_s = {}
        for name, run in runs.items():
            start = time.perf_counter()
            for _ in range(args.warmup):
                run()
            warmup_s[name] = time.perf_counter() - start
        times = interleaved_times(runs, args.repeats, args.clock)
        ms = {name: [t / args.new_tokens * 1e3 for t in ts] for name, ts in times.items()}
        for name in runs:
            ratio = (
                "" if name == "GPT-2 (HF)" else f"{paired_ratio(ms['GPT-2 (HF)'], ms[name]):.2f}x"
            )
            rows.append([name, str(batch), f"{median(ms[name]):.2f}", spread(ms[name]), ratio])
        if args.compile:
            compile_s = warmup_s["Geex (compiled step)"] - warmup_s["Geex"]
            notes.append(
                f"batch {batch}: torch.compile cost {compile_s:.1f} s (wall clock: compiled minus "
                f"eager Geex, over the same {args.warmup} warm-up calls)"
            )
    notes[:0] = [
        f"preset {args.preset}: {config.n_layer} blocks + top query layer vs GPT-2 with "
        f"{config.n_attention_layers} blocks, d_model {config.d_model}, vocab "
        f"{config.padded_vocab_size}; prompt {args.prompt_len} tokens, {args.new_tokens} new "
        f"tokens, greedy, {args.dtype}",
        f"ms/token = whole call / new tokens, median of {args.repeats} interleaved repeats after "
        f"{args.warmup} warm-up calls; ratio = median over repeats of HF ms / Geex ms",
        machine(args.clock),
    ]
    print_table(
        "Greedy decoding with a KV cache",
        ["model", "batch", "ms/token (median)", "ms/token (range)", "ratio HF / Geex"],
        rows,
        notes,
    )


if __name__ == "__main__":
    main()
