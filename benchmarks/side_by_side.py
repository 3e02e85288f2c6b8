"""What both benchmarks share: the GPT-2 twin of a Geex config, interleaved timing, the table.

Not a benchmark itself; ``train_step.py``, ``host_memory.py`` and ``decode.py`` import it from
beside them.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable
from datetime import date

import torch
import transformers
from rich.console import Console
from rich.table import Table
from transformers import GPT2Config, GPT2LMHeadModel

from geex.model import ModelConfig

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
# wall: elapsed time, what a user waits. cpu: this process's CPU time, which other processes on
# a shared machine barely disturb; it equals elapsed time for one busy thread (--threads 1), and
# with more threads it adds theirs up.
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def add_machine_arguments(parser) -> None:
    """--threads and --clock, shared by the benchmarks."""
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    parser.add_argument(
        "--clock",
        default="wall",
        choices=sorted(CLOCKS),
        help="wall: elapsed time; cpu: process CPU time, steadier on a busy machine "
        "(with --threads 1)",
    )


def gpt2_twin(config: ModelConfig):
    """A Hugging Face ``GPT2LMHeadModel`` with the same blocks, widths and vocabulary.

    GPT-2 has no top query layer, so it gets one more ordinary block: both models then run
    ``n_layer + 1`` attending blocks. Everything else stays at GPT-2's defaults (SDPA attention,
    tied embeddings, ``gelu_new``) except dropout, off as in Geex, and the bos/eos ids, unset so
    that decoding never stops early.
    """
    transformers.logging.set_verbosity_error()  # e.g. "eos_token_id outside the vocabulary"
    hf_config = GPT2Config(
        vocab_size=config.padded_vocab_size,
        n_positions=config.max_seq_len,
        n_embd=config.d_model,
        n_layer=config.n_attention_layers,
        n_head=config.n_head,
        n_inner=config.d_ffn,
        layer_norm_epsilon=config.layernorm_eps,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        tie_word_embeddings=True,
        bos_token_id=None,  # GPT-2's 50256 lies outside the tiny preset's vocabulary
        eos_token_id=None,
    )
    torch.manual_seed(0)
    return GPT2LMHeadModel(hf_config)


def step_shape(preset: str) -> tuple[int, int]:
    """Batch x sequence of one timed training step: 8 x 256 at tiny, 2 x 256 above it."""
    return {"tiny": (8, 256)}.get(preset, (2, 256))


def preset_optim(preset: str):
    """The AdamW settings ``geex train`` gives ``preset``: AdamW even where the preset trains
    with Muon (tiny), since the step is compared with a plain GPT's under the same optimizer."""
    from geex.presets import train_preset
    from geex.train.config import OptimConfig

    return OptimConfig(**{**train_preset(preset).get("optim", {}), "optimizer": "adamw"})


def training_side(which: str, config: ModelConfig, optim, seed: int):
    """``(model, optimizer)``: Geex with ``geex train``'s optimizer (``which="geex"``), or the
    plain GPT with the same AdamW (``"plain"``)."""
    from geex.model import build_model
    from geex.train.optim import build_optimizer
    from plain_gpt import PlainGPT, plain_adamw

    if which == "geex":
        model = build_model(config, seed=seed)
        return model, build_optimizer(model, optim)
    torch.manual_seed(seed)
    model = PlainGPT(config)
    return model, plain_adamw(model, optim)


def compile_blocks(model) -> None:
    """Compile Geex as its trainer does (geex.train.parallel): block by block, in place."""
    from geex.train.parallel import blocks

    for parent, name, block in blocks(model):
        block.compile()
        setattr(parent, name, block)


def random_token_step(
    model,
    optimizer,
    vocab_size: int,
    batch: int,
    seq: int,
    dtype=torch.float32,
    *,
    set_to_none: bool = True,
) -> Callable[[], None]:
    """One training step on fresh random tokens (forward under autocast to ``dtype`` unless
    fp32, backward, optimizer), as ``host_memory.py`` and ``optimizer_step.py`` time it."""

    def step() -> None:
        tokens = torch.randint(0, vocab_size, (batch, seq + 1))
        with torch.autocast("cpu", dtype=dtype, enabled=dtype != torch.float32):
            loss = model(tokens[:, :-1], targets=tokens[:, 1:])
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=set_to_none)

    return step


def interleaved_times(
    runs: dict[str, Callable[[], None]], repeats: int, clock: str = "wall"
) -> dict[str, list[float]]:
    """Seconds per call of each run, timed in turn (A B A B ...) so noise hits all alike."""
    now = CLOCKS[clock]
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            start = now()
            run()
            times[name].append(now() - start)
    return times


def median(values: list[float]) -> float:
    return statistics.median(values)


def paired_ratio(numerators: list[float], denominators: list[float]) -> float:
    """The median of per-repeat ratios: each pair ran back to back, under the same load."""
    return median([n / d for n, d in zip(numerators, denominators, strict=True)])


def spread(values: list[float]) -> str:
    return f"{min(values):.4g} to {max(values):.4g}"


def machine(clock: str = "wall") -> str:
    return (
        f"{date.today()}, {platform.machine()} with {os.cpu_count()} CPUs, "
        f"{torch.get_num_threads()} torch threads, {clock} clock, torch {torch.__version__}, "
        f"transformers {transformers.__version__}"
    )


def print_table(title: str, columns: list[str], rows: list[list[str]], notes: list[str]) -> None:
    table = Table(title=title)
    for column in columns:
        table.add_column(column, justify="left" if column == columns[0] else "right")
    for row in rows:
        table.add_row(*row)
    console = Console(width=120)
    console.print(table)
    for note in notes:
        console.print(note)
