"""Training keeps freed host memory: a step's blocks reuse the pages of the step before, with
no page faults, where glibc's defaults return them and fault them in again.

`pytest tests/train/test_host_memory.py`
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch

pytestmark = pytest.mark.skipif(
    platform.libc_ver()[0] != "glibc", reason="the setting is glibc's malloc's"
)

# A step's worth of blocks (four of 48 MiB, above the 32 MiB that glibc's mmap threshold can
# reach), allocated with glibc's malloc, written and freed, round after round: the page faults
# of ten rounds after the first. Each side runs in a fresh process of its own (torch's
# allocations would move glibc's thresholds first), and the setting is the process's for good.
ROUNDS = """
import ctypes, json, resource, sys
from geex.train.host_memory import keep_freed_memory
libc = ctypes.CDLL(None)
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, (ctypes.c_size_t,)
libc.free.argtypes = (ctypes.c_void_p,)
kept = sys.argv[1] == "kept" and keep_freed_memory()
SIZE = 48 * 2**20
def one_round():
    blocks = [libc.malloc(SIZE) for _ in range(4)]
    for block in blocks:
        ctypes.memset(block, 1, SIZE)
    for block in blocks:
        libc.free(block)
one_round()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    one_round()
print(json.dumps({"kept": kept,
                  "faults": resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before}))
"""


def page_faults(side: str) -> dict:
    command = [sys.executable, "-c", ROUNDS, side]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)
    return json.loads(result.stdout)


def test_blocks_freed_in_one_step_are_reused_without_page_faults():
    kept, default = page_faults("kept"), page_faults("default")
    assert kept["kept"] is True
    pages_of_one_round = 4 * 48 * 2**20 // 4096
    assert kept["faults"] < pages_of_one_round // 8, kept  # none of ten rounds faulted in
    assert default["faults"] > 9 * pages_of_one_round, default  # glibc's: every round again


@pytest.mark.parametrize(("device", "kept"), [("cpu", True), ("cuda", False)])
def test_the_trainer_keeps_freed_memory_on_the_cpu_only(device, kept, monkeypatch, tmp_path):
    """`train` asks for it once the device is known, before any step; a GPU run's host memory
    (checkpoints staged there, tens of GB at 13B) is left for glibc to give back."""
    import geex.train.trainer as trainer

    asked = []
    monkeypatch.setattr(trainer, "keep_freed_memory", lambda: asked.append(True) or True)
    monkeypatch.setattr(trainer, "flush_denormals", lambda: None)  # this process's mode stays
    world = SimpleNamespace(device=torch.device(device))
    monkeypatch.setattr(trainer, "init_world", lambda *args: world)
    monkeypatch.setattr(trainer, "Trainer", _stop)
    monkeypatch.setattr(trainer, "close_world", lambda *args, **kwargs: None)
    with pytest.raises(_Stopped):
        trainer.train(trainer.TrainConfig(data=str(tmp_path), out=str(tmp_path / "run")))
    assert asked == ([True] if kept else [])


class _Stopped(Exception):
    pass


def _stop(*args, **kwargs):
    raise _Stopped
