"""The GPU check behind ``benchmarks/gpu.sh``: training MFU, decoding and evaluation speed, one table.

1. Training: ``geex train`` (the real command, its own process) on random token shards of the
   preset's vocabulary, for ``small`` and ``350m`` in bf16 with ``--compile``, one micro-batch
   per step. MFU and tokens/s are the medians of ``metrics.jsonl`` over the steps after the
   first ``--skip`` (compilation and warm-up), so the table shows the steady state. The peak
   they divide by is the one the run recorded (``geex-train.json``, ``matmuls``).
2. Decoding: ``geex.model.generation.generate`` (what ``geex generate`` and the evaluation
   call), greedy, the ``small`` preset with random weights in bf16, at batch 1 and 8; new
   tokens per second of the whole call (prefill included), the median of ``--repeats``.
3. Evaluation: ``geex eval embedded`` (nothing to download) with the ``small`` model just
   trained and a tokenizer trained on Geex's own source: generation plus judging in the sandbox,
   Python problems; problems per second. The model is a few steps from random, so pass@1 is 0:
   the row measures speed only.

``--cpu-smoke``: the ``tiny`` preset in fp32 without compile, a few steps and tokens, on the
CPU: the same plumbing end to end, figures meaningless. Otherwise it needs a CUDA GPU.

    python benchmarks/gpu_check.py --work /tmp/gpu-check
    python benchmarks/gpu_check.py --cpu-smoke --work /tmp/gpu-smoke
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Budget:
    """How much each measurement does: the GPU check's, or the CPU smoke's."""

    presets: tuple[str, ...]
    precision: str
    compile: bool
    seq_len: int
    micro_batch: int
    steps: int
    skip: int  # first steps left out of the medians
    decode_preset: str
    decode_batches: tuple[int, ...]
    prompt_len: int
    new_tokens: int
    repeats: int
    eval_limit: int | None
    eval_new_tokens: int


GPU = Budget(("small", "350m"), "bf16", True, 2048, 8, 40, 15, "small", (1, 8), 128, 128, 3,
             None, 128)  # fmt: skip
CPU_SMOKE = Budget(("tiny",), "fp32", False, 64, 2, 3, 1, "tiny", (1,), 8, 4, 1, 2, 8)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, required=True, help="folder for data, runs, results")
    parser.add_argument("--cpu-smoke", action="store_true", help="tiny budgets on the CPU")
    return parser.parse_args()


def geex(*args: str) -> None:
    """Run a geex command in its own process; its output is kept for when it fails."""
    command = [sys.executable, "-m", "geex", *args]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode:
        sys.exit(f"`geex {' '.join(args)}` failed:\n{result.stderr[-3000:]}")


def random_shards(folder: Path, vocab_size: int, tokens: int) -> Path:
    """Token shards of uniformly random ids: a training step costs the same whatever they are."""
    from geex.data.shards import ShardWriter

    writer = ShardWriter(folder, vocab_size=vocab_size, eod_id=0)
    rng = np.random.default_rng(0)
    for _ in range(max(2, tokens // 4096 + 1)):
        writer.add(rng.integers(1, vocab_size, 4095), "python")
    return writer.close()


def training_row(preset: str, budget: Budget, work: Path, device: str) -> tuple[list[str], Path]:
    from geex.presets import model_preset
    from geex.train.monitor import read_metrics

    vocab = model_preset(preset).vocab_size
    step_tokens = budget.micro_batch * budget.seq_len
    data = random_shards(work / f"data-{preset}", vocab, (budget.steps + 2) * (step_tokens + 64))
    run = work / f"train-{preset}"
    flags = [
        "train", "--data", str(data), "--out", str(run), "--overwrite", "--preset", preset,
        "--precision", budget.precision, "--seq-len", str(budget.seq_len),
        "--micro-batch-size", str(budget.micro_batch), "--global-batch-tokens", str(step_tokens),
        "--max-steps", str(budget.steps), "--eval-every", "0", "--checkpoint-every", "0",
        "--warmup-steps", "1", "--device", device, "--no-progress",
    ]  # fmt: skip
    if budget.compile:
        flags.append("--compile")
    started = time.perf_counter()
    geex(*flags)
    wall = time.perf_counter() - started
    steady = read_metrics(run / "metrics.jsonl")[budget.skip :]
    matmuls = json.loads((run / "geex-train.json").read_text())["matmuls"]
    mfu = [r["mfu"] for r in steady if r["mfu"] is not None]
    row = [
        f"train {preset}",
        f"{budget.precision}{', compiled' if budget.compile else ''}, "
        f"{budget.micro_batch} x {budget.seq_len} tokens/step",
        f"{statistics.median(r['tokens_per_s'] for r in steady):,.0f} tokens/s",
        f"{100 * statistics.median(mfu):.1f}% of {matmuls['arithmetic']} peak"
        if mfu
        else "unknown (no peak for this device)",
        f"median of steps {budget.skip + 1}-{budget.steps}; {wall:.0f} s in all",
    ]
    return row, run / "model"


def decoding_rows(budget: Budget, device: str) -> list[list[str]]:
    from geex.model import build_model
    from geex.model.generation import generate
    from geex.model.sampling import SamplingConfig
    from geex.presets import model_preset

    config = model_preset(budget.decode_preset)
    dtype = torch.bfloat16 if budget.precision == "bf16" else torch.float32
    model = build_model(config, seed=0, dtype=dtype, device=device).eval()
    sampling = SamplingConfig(max_new_tokens=budget.new_tokens)
    rows = []
    for batch in budget.decode_batches:
        prompts = torch.randint(1, config.vocab_size, (batch, budget.prompt_len)).tolist()
        generate(model, prompts, sampling)  # warm-up: kernels, caches
        seconds = []
        for _ in range(budget.repeats):
            _synchronize(device)
            started = time.perf_counter()
            out = generate(model, prompts, sampling)
            _synchronize(device)
            seconds.append(time.perf_counter() - started)
            assert all(len(row[0]) == budget.new_tokens for row in out), "stopped early"
        rate = batch * budget.new_tokens / statistics.median(seconds)
        rows.append([
            f"decode {budget.decode_preset}",
            f"{budget.precision}, greedy, batch {batch}, prompt {budget.prompt_len}",
            f"{rate:,.0f} new tokens/s",
            "",
            f"{budget.new_tokens} new tokens a row, prefill included; median of {budget.repeats}",
        ])  # fmt: skip
    return rows


def evaluation_row(model: Path, budget: Budget, work: Path, device: str) -> list[str]:
    tokenizer = work / "tokenizer"
    geex("tokenizer", "train", str(REPO / "src" / "geex"), "--out", str(tokenizer),
         "--vocab-size", "4096")  # fmt: skip
    results = work / "eval"
    flags = [
        "eval", "embedded", "--model", str(model), "--tokenizer", str(tokenizer / "tokenizer.json"),
        "--languages", "python", "--n", "1", "--temperature", "0",
        "--max-new-tokens", str(budget.eval_new_tokens), "--batch-size", "10",
        "--device", device, "--out", str(results), "--no-progress",
    ]  # fmt: skip
    if budget.eval_limit:
        flags += ["--limit", str(budget.eval_limit)]
    started = time.perf_counter()
    geex(*flags)
    wall = time.perf_counter() - started
    problems = sum(1 for line in (results / "results.jsonl").read_text().splitlines() if line)
    return [
        "eval embedded",
        f"python, n=1, greedy, {budget.eval_new_tokens} new tokens at most",
        f"{problems / wall:.2f} problems/s",
        "",
        f"{problems} problems generated and judged in {wall:.1f} s (speed only: pass@1 is 0)",
    ]


def _synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def print_table(title: str, rows: list[list[str]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for column in ("measure", "setting", "throughput", "MFU", "how"):
        table.add_column(column)
    for row in rows:
        table.add_row(*row)
    Console(width=160).print(table)


def main() -> None:
    args = parse_args()
    budget = CPU_SMOKE if args.cpu_smoke else GPU
    device = "cpu" if args.cpu_smoke else "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        sys.exit("no CUDA GPU: run benchmarks/gpu.sh, which says so and exits, or --cpu-smoke")
    args.work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    rows, models = [], {}
    for preset in budget.presets:
        row, models[preset] = training_row(preset, budget, args.work, device)
        rows.append(row)
        print(" | ".join(row), flush=True)
    rows += decoding_rows(budget, device)
    rows.append(evaluation_row(models[budget.presets[0]], budget, args.work, device))
    name = torch.cuda.get_device_name() if device == "cuda" else "CPU (smoke: figures meaningless)"
    print_table(f"Geex GPU check: {name}, torch {torch.__version__}", rows)
    (args.work / "gpu-check.json").write_text(json.dumps({"device": name, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
