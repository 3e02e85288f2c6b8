"""Run a test's function in several CPU processes (gloo), as ``torchrun`` would run ranks.

Each rank enables :mod:`faulthandler`, so a crash inside torch prints the Python stack of
every thread to the test's captured stderr. A rank whose function returned leaves with
``os._exit(0)``, skipping the interpreter's teardown: the tests check what the ranks
computed, and gloo's threads, still alive at exit, can crash that teardown (a rank of a
4-process test once ended in SIGSEGV after its work was done, in CI only). A rank that
raises still fails the test, with its traceback.
"""

from __future__ import annotations

import faulthandler
import os
import sys

import torch.multiprocessing as mp


def spawn_ranks(fn, nprocs: int, *args) -> None:
    """Call ``fn(rank, *args)`` in ``nprocs`` processes and wait for all of them."""
    mp.spawn(_rank_main, args=(fn, args), nprocs=nprocs)


def _rank_main(rank: int, fn, args: tuple) -> None:
    faulthandler.enable(all_threads=True)
    fn(rank, *args)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
