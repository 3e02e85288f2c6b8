"""Watching a run: MFU from a table of GPU peaks per arithmetic, the JSONL metrics log, the
progress bar."""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

import torch

from geex.progress import open_bar, shared_active

# Dense peak FLOP/s per GPU for each arithmetic a matmul may run in: bf16 and fp16 on tensor
# cores; tf32, fp32 inputs on tensor cores (what PyTorch runs fp32 matmuls in once TF32 is
# allowed, geex.train.tf32); fp32 on the CUDA cores (TF32 off, or a GPU without it). None: the
# GPU lacks that arithmetic. From NVIDIA's data sheets, in TFLOPS as FP32 / TF32 / BF16 and
# FP16, a * marking a tensor-core figure given "with sparsity", halved here (dense):
#   H100 SXM 67 / 989* / 1,979*; H100 PCIe 51 / 756* / 1,513*; H100 NVL 60 / 835* / 1,671*;
#   H200 SXM and GH200 as H100 SXM; H200 NVL as H100 NVL; A100 and A800 19.5 / 312* / 624*;
#   L40S 91.6 / 183 / 362; L40 90.5 / 90.5 / 181; L4 30.3 / 120* / 242*; A10 31.2 / 125* / 250*;
#   A10G (AWS's A10 variant, as AWS lists it) 31.2 / 70* / 140*; GeForce RTX 4090 (Ada
#   whitepaper, fp32 accumulate) 82.6 / 82.6 / 165.2; V100 SXM2 15.7 / none / FP16 125 and no
#   BF16; T4 8.1 / none / FP16 65 and no BF16.
PEAK_FLOPS = {
    "H100 NVL": {"bf16": 835e12, "fp16": 835e12, "tf32": 418e12, "fp32": 60e12},
    "H100 PCIe": {"bf16": 756e12, "fp16": 756e12, "tf32": 378e12, "fp32": 51e12},
    "H100": {"bf16": 989e12, "fp16": 989e12, "tf32": 494e12, "fp32": 67e12},  # SXM
    "H200 NVL": {"bf16": 835e12, "fp16": 835e12, "tf32": 418e12, "fp32": 60e12},
    "H200": {"bf16": 989e12, "fp16": 989e12, "tf32": 494e12, "fp32": 67e12},  # SXM
    "GH200": {"bf16": 989e12, "fp16": 989e12, "tf32": 494e12, "fp32": 67e12},
    "A100": {"bf16": 312e12, "fp16": 312e12, "tf32": 156e12, "fp32": 19.5e12},
    "A800": {"bf16": 312e12, "fp16": 312e12, "tf32": 156e12, "fp32": 19.5e12},
    "L40S": {"bf16": 362e12, "fp16": 362e12, "tf32": 183e12, "fp32": 91.6e12},
    "L40": {"bf16": 181e12, "fp16": 181e12, "tf32": 90.5e12, "fp32": 90.5e12},
    "L4": {"bf16": 121e12, "fp16": 121e12, "tf32": 60e12, "fp32": 30.3e12},
    "A10G": {"bf16": 70e12, "fp16": 70e12, "tf32": 35e12, "fp32": 31.2e12},
    "A10": {"bf16": 125e12, "fp16": 125e12, "tf32": 62.5e12, "fp32": 31.2e12},
    "RTX 4090": {"bf16": 165e12, "fp16": 165e12, "tf32": 82.6e12, "fp32": 82.6e12},
    "V100": {"bf16": None, "fp16": 125e12, "tf32": None, "fp32": 15.7e12},
    "T4": {"bf16": None, "fp16": 65e12, "tf32": None, "fp32": 8.1e12},
}
ARITHMETICS = ("bf16", "fp16", "tf32", "fp32")


def matmul_arithmetic(precision: str, tf32: bool) -> str:
    """What a training step's matmuls run in: the autocast dtype, or for fp32 training TF32
    where it is on (:func:`geex.train.tf32.tf32_applies`) and plain fp32 where it is not."""
    if precision in ("bf16", "fp16"):
        return precision
    if precision != "fp32":
        raise ValueError(f"no matmul arithmetic for precision {precision!r}: resolve it first")
    return "tf32" if tf32 else "fp32"


def gpu_peaks(device_name: str) -> dict | None:
    """The peaks of the GPU called ``device_name`` (torch.cuda.get_device_name()), matched by
    the longest table name inside it, so that "NVIDIA L40S" is an L40S and not an L4, and
    "NVIDIA GH200 480GB" a GH200 and not an H200."""
    found = [key for key in PEAK_FLOPS if key in device_name]
    return PEAK_FLOPS[max(found, key=len)] if found else None


def peak_flops(device: torch.device, arithmetic: str) -> float | None:
    """The device's peak FLOP/s in ``arithmetic`` (one of ARITHMETICS), or None when unknown
    (every CPU: their peaks depend on core count, clocks and vector units that PyTorch does not
    report; a GPU missing from the table)."""
    if arithmetic not in ARITHMETICS:
        raise ValueError(f"arithmetic must be one of {', '.join(ARITHMETICS)}, got {arithmetic!r}")
    if device.type != "cuda":
        return None
    peaks = gpu_peaks(torch.cuda.get_device_name(device))
    return None if peaks is None else peaks[arithmetic]


class MetricsLog:
    """``metrics.jsonl``: one JSON object per optimizer step, appended and flushed as it comes."""

    def __init__(self, path: Path, enabled: bool = True):
        self.path, self.enabled = path, enabled

    def truncate_after(self, step: int) -> None:
        """Forget steps after ``step`` (they are redone when a run resumes from there)."""
        if not self.enabled or not self.path.exists():
            return
        kept = [line for line in self.path.read_text().splitlines() if _step(line) <= step]
        self.path.write_text("".join(f"{line}\n" for line in kept))

    def write(self, record: dict) -> None:
        if not self.enabled:
            return
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")


def read_metrics(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def final_validation(records: list[dict]) -> dict | None:
    """The last validation of a run: ``{"step", "val_loss", "val_bpb"}`` (bits per byte where
    the data's tokenizer gave byte counts), or None when it never validated."""
    for record in reversed(records):
        if record.get("val_loss"):
            return {"step": record["step"], "val_loss": record["val_loss"],
                    "val_bpb": record.get("val_bpb") or {}}  # fmt: skip
    return None


def validation_line(validation: dict) -> str:
    """``validation after 100 steps: loss 1.2345 nats/token, 0.9876 bits/byte`` (all
    languages together)."""
    line = f"validation after {validation['step'] + 1:,} steps: "
    line += f"loss {validation['val_loss']['all']:.4f} nats/token"
    bpb = validation["val_bpb"].get("all")
    return line + (f", {bpb:.4f} bits/byte" if bpb is not None else "")


def _step(line: str) -> int:
    try:
        return int(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):
        return math.inf  # an unreadable (half-written) line goes


class Progress:
    """A live bar on a terminal; a plain line every so often in a log file."""

    def __init__(
        self,
        total_steps: int | None,
        first_step: int,
        enabled: bool = True,
        arithmetic: str | None = None,
    ):
        self.enabled = enabled
        self.arithmetic = arithmetic  # the peak MFU is measured against
        self.total = total_steps
        self.first = first_step
        self.start = time.monotonic()
        self.live = enabled and (sys.stderr.isatty() or shared_active())
        self._last_print = 0.0
        self._bar = open_bar("train", total_steps, completed=first_step) if self.live else None

    def set_total(self, total_steps: int) -> None:
        self.total = total_steps
        if self._bar is not None:
            self._bar.update(total=total_steps)

    def update(self, step: int, record: dict) -> None:
        if not self.enabled:
            return
        mfu = record.get("mfu")
        stats = (
            f"loss {record['loss']:.4f}  {record['tokens_per_s']:,.0f} tok/s  "
            f"MFU {'unknown' if mfu is None else f'{100 * mfu:.1f}%'}"
        )
        if mfu is not None and self.arithmetic:
            stats += f" of {self.arithmetic} peak"
        if "val_loss" in record:
            stats += f"  val {record['val_loss']['all']:.4f}"
            if "val_bpb" in record:
                stats += f" ({record['val_bpb']['all']:.3f} bits/byte)"
        if self._bar is not None:
            self._bar.update(completed=step + 1, info=stats)
            return
        now = time.monotonic()
        if now - self._last_print >= 10 or step + 1 == self.total or "val_loss" in record:
            self._last_print = now
            total = self.total if self.total is not None else "?"
            print(f"step {step + 1}/{total}  {stats}", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
