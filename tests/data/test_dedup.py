"""Exact and MinHash near deduplication: estimates, LSH collisions, one kept per group whatever the task split. `pytest tests/data/test_dedup.py`"""

from __future__ import annotations

import random

import numpy as np
from datatrove.data import Document
from datatrove.pipeline.dedup.minhash import MinhashDedupBuckets

from geex.data.dedup import (
    LSH_BANDS,
    LSH_ROWS,
    DedupSignatures,
    DropDuplicates,
    ExactDuplicates,
    MinHasher,
    NearDuplicateClusters,
    code_shingles,
    minhash_config,
)
from tests.data.trees import python_module


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    return len(np.intersect1d(a, b)) / len(np.union1d(a, b))


def test_signature_agreement_estimates_jaccard_similarity():
    hasher = MinHasher(minhash_config())
    text = "\n".join(python_module(i) for i in range(4))
    rng = random.Random(0)
    for edit in (0.05, 0.3, 0.6):
        lines = [f"x{rng.random()} = 1" if rng.random() < edit else ln for ln in text.splitlines()]
        a, b = code_shingles(text), code_shingles("\n".join(lines))
        estimate = (hasher.signature(a) == hasher.signature(b)).mean()
        assert abs(estimate - jaccard(a, b)) < 0.08


def test_shingles_ignore_layout_and_the_lsh_is_tuned_for_0_7():
    assert LSH_BANDS * LSH_ROWS <= 256
    assert 0.69 < (1 / LSH_BANDS) ** (1 / LSH_ROWS) < 0.75
    code = "def f(a, b):\n    return a + b\n"
    assert np.array_equal(code_shingles(code), code_shingles("def f(a,b):\n  return a+b"))
    assert code_shingles("x").size == 1 and code_shingles("  ").size == 0


def run_dedup(tmp_path, docs_per_task: list[list[Document]]):
    """Stage 1 per task, then the exact, bucket and cluster stages; returns kept ids."""
    folder = tmp_path / "dedup"
    tasks = len(docs_per_task)
    for rank, docs in enumerate(docs_per_task):
        list(DedupSignatures(folder).run(iter(docs), rank, tasks))
    list(ExactDuplicates(folder, tasks).run())
    config = minhash_config()
    for band in range(config.num_buckets):
        sigs, pairs = str(folder / "minhash" / "sigs"), str(folder / "minhash" / "buckets")
        buckets = MinhashDedupBuckets(sigs, pairs, config=config)
        buckets.run(None, band, config.num_buckets)
    list(NearDuplicateClusters(folder, tasks).run())
    kept, dropper = [], DropDuplicates(folder)
    for rank, docs in enumerate(docs_per_task):
        kept += [d.id for d in dropper.run(iter(docs), rank, tasks)]
    return sorted(kept), dropper.stats


def test_one_copy_is_kept_per_group_and_the_same_one_for_any_task_split(tmp_path):
    base = [python_module(i, functions=20) for i in range(6)]
    near = base[0].replace("step", "k", 3) + "\n# a comment\n"
    docs = [
        Document(text, f"src::m{i}.py", metadata={"language": "python"})
        for i, text in enumerate(base)
    ]
    docs += [
        Document(base[1], "src::a_exact_copy.py", metadata={"language": "python"}),
        Document(near, "src::z_near_copy.py", metadata={"language": "python"}),
        Document(base[2], "src::zz_second_copy.py", metadata={"language": "python"}),
    ]
    one, stats = run_dedup(tmp_path / "one", [docs])
    assert (
        stats["dropped_exact_duplicate"].total == 2 and stats["dropped_near_duplicate"].total == 1
    )
    groups = [
        {"src::m0.py", "src::z_near_copy.py"},
        {"src::m1.py", "src::a_exact_copy.py"},
        {"src::m2.py", "src::zz_second_copy.py"},
    ]
    assert len(one) == 6 and all(len(group.intersection(one)) == 1 for group in groups)
    # the kept copy is chosen by a hash of the id, not by position: same result split in 3
    three, _ = run_dedup(tmp_path / "three", [docs[0::3], docs[1::3], docs[2::3]])
    reversed_, _ = run_dedup(tmp_path / "rev", [docs[::-1]])
    assert one == three == reversed_
