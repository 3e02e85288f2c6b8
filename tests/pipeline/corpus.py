"""A small Python corpus for `geex run` tests: distinct modules that pass the data filters."""

from __future__ import annotations

import random
from pathlib import Path

WORDS = ["alpha", "beta", "gamma", "delta", "total", "count", "index", "value", "items",
         "result", "scale", "offset"]  # fmt: skip


def module_text(seed: int) -> str:
    """A distinct module of ~2 KB: the data stage drops files under 1 KB and near duplicates."""
    rng = random.Random(seed)
    functions = []
    for f in range(8):
        a, b, c = rng.sample(WORDS, 3)
        functions.append(
            f"def {a}_{b}_{seed}_{f}({a}, {b}):\n"
            f'    """Combine {a} and {b} with {c}."""\n'
            f"    {c} = {a} * {rng.randint(2, 99)} + {b} - {rng.randint(1, 999)}\n"
            f"    return [{c} + i for i in range({rng.randint(3, 50)})]\n"
        )
    return "\n\n".join(functions)


def write_corpus(folder: Path, files: int = 40) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(files):
        (folder / f"module_{i}.py").write_text(module_text(i))
    return folder
