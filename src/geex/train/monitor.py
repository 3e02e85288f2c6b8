"""Watching a run: MFU from a table of device peaks, the JSONL metrics log, the progress bar."""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

import torch

from geex.progress import open_bar, shared_active

# Dense (no sparsity) peak FLOP/s per device for bf16/fp16 tensor-core matmuls, and for fp32
# (TF32 tensor cores where the device has them, as PyTorch uses for fp32 matmuls when allowed).
# From the vendors' data sheets. Matched by substring of torch.cuda.get_device_name().
PEAK_FLOPS = {
    "H200": {"bf16": 989e12, "fp16": 989e12, "fp32": 494e12},
    "H100 NVL": {"bf16": 835e12, "fp16": 835e12, "fp32": 418e12},
    "H100 PCIe": {"bf16": 756e12, "fp16": 756e12, "fp32": 378e12},
    "H100": {"bf16": 989e12, "fp16": 989e12, "fp32": 494e12},  # SXM
    "GH200": {"bf16": 989e12, "fp16": 989e12, "fp32": 494e12},
    "A100": {"bf16": 312e12, "fp16": 312e12, "fp32": 156e12},
    "A800": {"bf16": 312e12, "fp16": 312e12, "fp32": 156e12},
    "L40S": {"bf16": 362e12, "fp16": 362e12, "fp32": 183e12},
    "A10G": {"bf16": 70e12, "fp16": 70e12, "fp32": 35e12},
    "A10": {"bf16": 125e12, "fp16": 125e12, "fp32": 62.5e12},
    "L4": {"bf16": 121e12, "fp16": 121e12, "fp32": 60e12},
    "RTX 4090": {"bf16": 165e12, "fp16": 165e12, "fp32": 82.6e12},
    "V100": {"bf16": None, "fp16": 125e12, "fp32": 15.7e12},
    "T4": {"bf16": None, "fp16": 65e12, "fp32": 8.1e12},
}


def peak_flops(device: torch.device, precision: str) -> float | None:
    """The device's peak FLOP/s in ``precision``, or None when unknown (every CPU: their peaks
    depend on core count, clocks and vector units that PyTorch does not report)."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key, peaks in PEAK_FLOPS.items():  # longer names first where they overlap
        if key in name:
            return peaks.get(precision)
    return None


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

    def __init__(self, total_steps: int | None, first_step: int, enabled: bool = True):
        self.enabled = enabled
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
