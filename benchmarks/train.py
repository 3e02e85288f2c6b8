"""Training throughput: Geex's whole training loop beside a plain PyTorch loop over GPT-2.

Geex runs its real ``Trainer`` step: a batch read from packed shards on disk, the forward pass,
the fp32 loss, backward, the global-norm clip, the learning-rate schedule and the AdamW step
with CodeGeeX's parameter groups. The baseline is the loop a researcher writes by hand over
Hugging Face's ``GPT2LMHeadModel`` of identical dimensions (one more block for the top query
layer): the same batch size and sequence length, random tokens already in memory, AdamW and
the same clip. Both in fp32 unless ``--precision bf16``. Steps alternate (Geex, GPT-2, ...)
so the machine's noise hits both; the table shows tokens/s, MFU (unknown on CPUs: no peak
FLOP/s table exists for them) and the ratio.

    .venv/bin/python benchmarks/train.py --preset tiny
    .venv/bin/python benchmarks/train.py --preset small --batch 2 --seq 256 --compile
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))

from geex.data.shards import ShardWriter
from geex.model.loss import lm_loss
from geex.presets import model_preset
from geex.train.config import TrainConfig
from geex.train.distributed import init_world
from geex.train.monitor import peak_flops
from geex.train.precision import autocast
from geex.train.trainer import Trainer
from side_by_side import (
    add_machine_arguments,
    gpt2_twin,
    interleaved_times,
    machine,
    median,
    paired_ratio,
    print_table,
)

GEEX, HF = "Geex Trainer", "GPT-2 (HF), plain loop"
DEFAULT_SHAPES = {"tiny": (8, 256), "small": (2, 256)}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="tiny", choices=sorted(DEFAULT_SHAPES))
    parser.add_argument("--batch", type=int, help="sequences per step")
    parser.add_argument("--seq", type=int, help="sequence length")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    parser.add_argument("--compile", action="store_true", help="compile Geex's blocks")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=8)
    add_machine_arguments(parser)
    return parser.parse_args()


def random_shards(folder: Path, vocab: int, tokens: int) -> Path:
    writer = ShardWriter(folder, vocab_size=vocab, eod_id=0)
    rng = np.random.default_rng(0)
    for _ in range(max(1, tokens // 4096)):
        writer.add(rng.integers(1, vocab, 4095), "python")
    return writer.close()


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    batch, seq = (
        args.batch or DEFAULT_SHAPES[args.preset][0],
        args.seq or DEFAULT_SHAPES[args.preset][1],
    )
    config = model_preset(args.preset)
    steps = args.warmup + args.repeats
    with tempfile.TemporaryDirectory() as tmp:
        data = random_shards(Path(tmp) / "data", config.vocab_size, (steps + 2) * batch * (seq + 1))
        world = init_world("cpu")
        trainer = Trainer(
            TrainConfig.from_dict(
                {
                    "data": str(data),
                    "out": str(Path(tmp) / "run"),
                    "preset": args.preset,
                    "seq_len": seq,
                    "global_batch_tokens": batch * seq,
                    "micro_batch_size": batch,
                    "max_steps": steps,
                    "precision": args.precision,
                    "eval_every": 0,
                    "parallel": {"compile": args.compile},
                }
            ),
            world,
            show_progress=False,
        )
        gpt2 = gpt2_twin(trainer.model_config)
        optimizer = torch.optim.AdamW(gpt2.parameters(), lr=1e-4, betas=(0.9, 0.95), eps=1e-8)
        tokens = torch.randint(0, config.vocab_size, (batch, seq + 1))

        def geex_step():
            trainer._train_step()
            trainer.step += 1

        def hf_step():
            with autocast(args.precision, torch.device("cpu")):
                logits = gpt2(tokens[:, :-1]).logits
            lm_loss(logits, tokens[:, 1:]).backward()
            torch.nn.utils.clip_grad_norm_(gpt2.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        for _ in range(args.warmup):
            geex_step()
            hf_step()
        times = interleaved_times({GEEX: geex_step, HF: hf_step}, args.repeats, args.clock)

    tokens_per_step = batch * seq
    peak = peak_flops(torch.device("cpu"), args.precision)
    flops = trainer.flops_per_token
    rows = []
    for name in (GEEX, HF):
        rate = tokens_per_step / median(times[name])
        mfu = "unknown (CPU)" if peak is None else f"{100 * flops * rate / peak:.1f}%"
        rows.append([name, f"{rate:,.0f}", f"{flops * rate / 1e9:,.1f}", mfu])
    ratio = 1 / paired_ratio(times[GEEX], times[HF])
    rows.append(["Geex / GPT-2", f"{ratio:.2f}x", "", ""])
    print_table(
        f"training step, {args.preset}, batch {batch} x {seq}, {args.precision}"
        + (", Geex compiled" if args.compile else ""),
        ["", "tokens/s", "GFLOP/s", "MFU"],
        rows,
        [
            machine(args.clock),
            f"median of {args.repeats} interleaved steps after {args.warmup} warm-up",
        ],
    )


if __name__ == "__main__":
    main()
