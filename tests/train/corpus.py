"""A fixed, synthetic code corpus and byte-level shards of it, for training tests.

Generated from a seeded numpy PCG64 stream, so it is identical on every machine and needs no
files: the golden loss curve depends on nothing but this module and PyTorch's numerics.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from geex.data.shards import ShardWriter

EOD = 256  # bytes are ids 0..255; the end-of-document id comes after them
VOCAB = 257

_NAMES = ["total", "count", "items", "value", "index", "result", "buffer", "node", "left", "right"]
_OPS = ["+", "-", "*", "//", "%"]


def python_function(rng: np.random.Generator) -> str:
    name = f"{rng.choice(['compute', 'merge', 'scan', 'update', 'reduce'])}_{rng.choice(_NAMES)}"
    a, b = rng.choice(_NAMES, size=2, replace=False)
    lines = [f"def {name}({a}, {b}):", f'    """Return the {rng.choice(_NAMES)} of {a} and {b}."""']
    for _ in range(int(rng.integers(1, 4))):
        lines.append(f"    {a} = {a} {rng.choice(_OPS)} {int(rng.integers(1, 100))}")
    lines += [f"    if {a} > {b}:", f"        return {a} {rng.choice(_OPS)} {b}", f"    return {b}"]
    return "\n".join(lines) + "\n"


def c_function(rng: np.random.Generator) -> str:
    a, b = rng.choice(_NAMES, size=2, replace=False)
    body = [f"    int {a} = {int(rng.integers(0, 50))};"]
    body.append(f"    for (int i = 0; i < {b}; i++) {{")
    body.append(f"        {a} {rng.choice(['+', '-', '*'])}= i;")
    body += ["    }", f"    return {a};"]
    return (
        f"int {rng.choice(['sum', 'fold', 'walk'])}_{a}(int {b}) {{\n" + "\n".join(body) + "\n}\n"
    )


def documents(n: int = 400, seed: int = 0) -> list[tuple[str, str]]:
    """``(language, text)`` pairs, about 60% Python, 40% C, each with its language tag."""
    rng = np.random.default_rng(seed)
    docs = []
    for _ in range(n):
        if rng.random() < 0.6:
            docs.append(("python", "# language: Python\n" + python_function(rng)))
        else:
            docs.append(("c", "// language: C\n" + c_function(rng)))
    return docs


def write_byte_shards(folder: Path, n: int = 400, validation_every: int = 10) -> Path:
    """Byte-level shards; every ``validation_every``-th document held out (0: none is)."""
    writer = ShardWriter(folder, vocab_size=VOCAB, eod_id=EOD)
    for i, (language, text) in enumerate(documents(n)):
        split = "validation" if validation_every and i % validation_every == 0 else "train"
        writer.add(list(text.encode()), language, split)
    return writer.close()


def write_tokenized_shards(folder: Path, language: str, vocab_size: int = 320) -> Path:
    """Shards of the corpus tokenized by a tokenizer trained on its ``language`` files only:
    two such datasets share a vocabulary size but not the meaning of their ids."""
    from geex.tokenizer import train_tokenizer

    docs = documents(200)
    tokenizer = train_tokenizer(
        [text for lang, text in docs if lang == language], vocab_size, languages=["python", "c"]
    )
    writer = ShardWriter(folder, vocab_size=tokenizer.vocab_size, eod_id=tokenizer.eod_id)
    for i, (lang, text) in enumerate(docs):
        writer.add(tokenizer.encode(text), lang, "validation" if i % 10 == 0 else "train")
    tokenizer.save(folder)
    return writer.close()
