"""Training on the CPU keeps freed memory: a step's blocks reuse the pages of the step before,
with no page faults, where glibc's defaults return them and fault them in again; and it gives
the memory back when training ends.

`pytest tests/train/test_host_memory.py`
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

pytestmark = pytest.mark.skipif(
    platform.libc_ver()[0] != "glibc", reason="the setting is glibc's malloc's"
)

# Rounds of a step's worth of blocks (four of 48 MiB, above the 32 MiB that glibc's mmap
# threshold can reach), allocated with glibc's malloc, written and freed: the page faults of
# ten rounds after the first, then the resident memory. With "given back", the memory is kept
# for those rounds and given back after them, and ten more rounds are counted. Each side runs
# in a fresh process of its own (torch's allocations would move glibc's thresholds first).
ROUNDS = """
import ctypes, json, resource, sys
from geex.train.host_memory import give_back_freed_memory, keep_freed_memory
libc = ctypes.CDLL(None)
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, (ctypes.c_size_t,)
libc.free.argtypes = (ctypes.c_void_p,)
SIZE = 48 * 2**20
def one_round():
    blocks = [libc.malloc(SIZE) for _ in range(4)]
    for block in blocks:
        ctypes.memset(block, 1, SIZE)
    for block in blocks:
        libc.free(block)
def faults_of_ten_rounds():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(10):
        one_round()
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
def resident():
    status = open("/proc/self/status").read()
    return int(status.split("VmRSS:")[1].split()[0]) * 1024
kept = sys.argv[1] != "default" and keep_freed_memory()
one_round()
found = {"kept": kept, "faults": faults_of_ten_rounds(), "resident": resident()}
if sys.argv[1] == "given back":
    give_back_freed_memory()
    found.update(resident_given_back=resident(), faults_given_back=faults_of_ten_rounds())
print(json.dumps(found))
"""
ROUND_PAGES = 4 * 48 * 2**20 // 4096
# With transparent huge pages always on, a mapping faults in 2 MiB at a time: the counts differ.
HUGE_PAGES = Path("/sys/kernel/mm/transparent_hugepage/enabled")
ALWAYS_HUGE = HUGE_PAGES.is_file() and "[always]" in HUGE_PAGES.read_text()


def rounds(side: str) -> dict:
    command = [sys.executable, "-c", ROUNDS, side]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)
    return json.loads(result.stdout)


@pytest.mark.skipif(ALWAYS_HUGE, reason="transparent huge pages are always on: 2 MiB faults")
def test_blocks_freed_in_one_step_are_reused_without_page_faults():
    kept, default = rounds("kept"), rounds("default")
    assert kept["kept"] is True
    assert kept["faults"] < ROUND_PAGES // 8, kept  # none of ten rounds faulted in
    assert default["faults"] > 9 * ROUND_PAGES, default  # glibc's: every round again


def test_the_kept_memory_is_given_back_and_the_defaults_come_back():
    found = rounds("given back")
    assert found["kept"] is True
    # The 192 MiB of a round were resident while kept, and are returned.
    assert found["resident"] - found["resident_given_back"] > 150 * 2**20, found
    if not ALWAYS_HUGE:
        assert found["faults_given_back"] > 9 * ROUND_PAGES, found  # mapped and unmapped again


@pytest.mark.parametrize(("device", "kept"), [("cpu", True), ("cuda", False)])
def test_the_trainer_keeps_freed_memory_on_the_cpu_only(device, kept, monkeypatch, tmp_path):
    """`train` asks for it once the device is known, before any step, and gives it back when
    the run ends, failed or not; a GPU run's host memory (checkpoints staged there, tens of GB
    at 13B) is left for glibc to give back."""
    import geex.train.trainer as trainer

    calls = []
    monkeypatch.setattr(trainer, "keep_freed_memory", lambda: calls.append("keep") or True)
    monkeypatch.setattr(trainer, "give_back_freed_memory", lambda: calls.append("give back"))
    monkeypatch.setattr(trainer, "flush_denormals", lambda: None)  # this process's mode stays
    world = SimpleNamespace(device=torch.device(device))
    monkeypatch.setattr(trainer, "init_world", lambda *args: world)
    monkeypatch.setattr(trainer, "close_world", lambda *args, **kwargs: None)

    def run_ends(*args):
        calls.append("run")
        raise _Stopped

    monkeypatch.setattr(trainer, "_train_on", run_ends)
    with pytest.raises(_Stopped):
        trainer.train(trainer.TrainConfig(data=str(tmp_path), out=str(tmp_path / "run")))
    assert calls == (["keep", "run", "give back"] if kept else ["run"])


class _Stopped(Exception):
    pass
