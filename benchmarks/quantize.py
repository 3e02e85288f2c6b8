"""Weight-only INT8 against fp32 and bf16: weight memory, decode tokens/s and logit error.

For each preset, one randomly initialised model in four forms, side by side in one run: fp32,
bf16, and INT8 (``geex.model.quantize.quantize_int8``) computing in bf16 and in fp32. Each
decodes the same random prompts greedily for exactly ``--new-tokens`` tokens (no end id), timed
in turn (A B C D A B ...) so that the load of a shared machine hits all alike. Reported:

* weight bytes (parameters and buffers) and their ratio to the fp16 size of the same model,
  the issue's aim being at most 55%;
* decode tokens/s (new tokens over the whole call, prefill included) and its ratio to bf16;
* for INT8, the logits' relative error (||int8 - base|| / ||base||) and top-1 agreement against
  the same model unquantized in the same dtype, over the prompts (random weights and ids: see
  tests/model/test_quantize.py for the error on a trained model and real code).

Then CodeGeeX-13B's weight memory, computed on the meta device (no memory, no time): fp16
against INT8, next to the 26.9 GB -> 14.7 GB CodeGeeX reported (it kept the word embedding in
fp16; Geex quantizes it too).

    python benchmarks/quantize.py                       # tiny and small, CPU
    python benchmarks/quantize.py --presets tiny --threads 1 --clock cpu
    python benchmarks/quantize.py --device cuda         # on a GPU
"""

from __future__ import annotations

import argparse
import copy

import torch

from geex.model import build_model, num_params
from geex.model.generation import generate
from geex.model.quantize import quantize_int8, weight_bytes
from geex.model.sampling import SamplingConfig
from geex.presets import MODEL_PRESETS, model_preset
from side_by_side import (
    add_machine_arguments,
    interleaved_times,
    machine,
    median,
    paired_ratio,
    print_table,
    spread,
)

CODEGEEX_13B_FP16_GB, CODEGEEX_13B_INT8_GB = 26.9, 14.7  # CodeGeeX's README


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", nargs="+", default=["tiny", "small"], choices=MODEL_PRESETS)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--prompt-len", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--warmup", type=int, default=1, help="untimed calls per model")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per model")
    add_machine_arguments(parser)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def variants(preset: str, device: str, seed: int) -> dict[str, tuple[torch.nn.Module, str]]:
    """name -> (model, the name of the unquantized model it is compared with)."""
    fp32 = build_model(model_preset(preset), device=device, seed=seed).eval()
    bf16 = copy.deepcopy(fp32).to(torch.bfloat16)
    int8_bf16, int8_fp32 = copy.deepcopy(bf16), copy.deepcopy(fp32)
    quantize_int8(int8_bf16)
    quantize_int8(int8_fp32)
    return {
        "fp32": (fp32, "fp32"),
        "bf16": (bf16, "bf16"),
        "int8 (bf16 compute)": (int8_bf16, "bf16"),
        "int8 (fp32 compute)": (int8_fp32, "fp32"),
    }


@torch.inference_mode()
def logit_error(model, base, prompts: torch.Tensor) -> tuple[float, float]:
    got, expected = model(prompts).float(), base(prompts).float()
    relative = ((got - expected).norm() / expected.norm()).item()
    top1 = (got.argmax(-1) == expected.argmax(-1)).float().mean().item()
    return relative, top1


def bench_preset(preset: str, args: argparse.Namespace, rows: list, notes: list) -> None:
    config = model_preset(preset)
    models = variants(preset, args.device, args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    prompts = torch.randint(
        0, config.vocab_size, (args.batch, args.prompt_len), generator=generator
    )
    prompt_lists = prompts.tolist()
    sampling = SamplingConfig(max_new_tokens=args.new_tokens, temperature=0)

    def runner(model):
        def run():
            out = generate(model, prompt_lists, sampling, vocab_size=config.vocab_size)
            assert all(len(row[0]) == args.new_tokens for row in out)

        return run

    runs = {name: runner(model) for name, (model, _) in models.items()}
    for run in runs.values():
        for _ in range(args.warmup):
            run()
    times = interleaved_times(runs, args.repeats, args.clock)
    tokens = args.batch * args.new_tokens
    rate = {name: [tokens / t for t in ts] for name, ts in times.items()}
    fp16_bytes = num_params(config) * 2
    for name, (model, base_name) in models.items():
        size = weight_bytes(model)
        error = ""
        if name.startswith("int8"):
            relative, top1 = logit_error(model, models[base_name][0], prompts.to(args.device))
            error = f"{relative:.4f} / {top1:.1%}"
        rows.append(
            [
                preset,
                name,
                f"{size / 1e6:,.1f}",
                f"{size / fp16_bytes:.1%}",
                f"{median(rate[name]):.1f}",
                spread(rate[name]),
                f"{paired_ratio(rate[name], rate['bf16']):.2f}x",
                error,
            ]
        )
    notes.append(
        f"{preset}: {num_params(config):,} parameters, fp16 size {fp16_bytes / 1e6:,.1f} MB"
    )


def codegeex_13b_lines() -> list[str]:
    config = model_preset("codegeex-13b")
    model = build_model(config, device="meta").to(torch.float16).eval()
    report = quantize_int8(model)
    before, after = report.bytes_before, report.bytes_after
    return [
        f"CodeGeeX-13B on the meta device ({num_params(config):,} parameters): fp16 "
        f"{before / 1e9:.1f} GB ({before / 2**30:.1f} GiB) -> int8 {after / 1e9:.1f} GB "
        f"({after / 2**30:.1f} GiB), {report.ratio:.1%}; CodeGeeX reported "
        f"{CODEGEEX_13B_FP16_GB} GB -> {CODEGEEX_13B_INT8_GB} GB "
        f"({CODEGEEX_13B_INT8_GB / CODEGEEX_13B_FP16_GB:.1%}; it kept the word embedding in fp16)",
        *(f"  {line}" for line in report.lines()),
    ]


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rows: list[list[str]] = []
    notes: list[str] = []
    for preset in args.presets:
        bench_preset(preset, args, rows, notes)
    notes += [
        f"batch {args.batch}, prompt {args.prompt_len} tokens, {args.new_tokens} new tokens, "
        f"greedy, on {args.device}; tokens/s = new tokens / whole call, median of "
        f"{args.repeats} interleaved repeats after {args.warmup} warm-up call(s); ratio = median "
        "over repeats of tokens/s / bf16's tokens/s",
        "logit error: relative error / top-1 agreement against the unquantized model in the "
        "same compute dtype, over the prompts (random weights)",
        machine(args.clock),
        *codegeex_13b_lines(),
    ]
    print_table(
        "Weight-only INT8 against fp32 and bf16",
        [
            "preset",
            "weights",
            "MB",
            "of fp16",
            "tokens/s",
            "tokens/s (range)",
            "vs bf16",
            "logit error / top-1",
        ],
        rows,
        notes,
    )


if __name__ == "__main__":
    main()
