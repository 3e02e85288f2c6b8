"""FIM training teaches a model to read the suffix: a tiny model trained through `geex data`
and `geex train` on files whose first line is known only from the line after it infills that
line, where the same model trained without FIM can only guess.
`pytest tests/data/test_fim_training.py` (the comparison with the plain model is marked slow)"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from geex.cli import main
from geex.model.generation import generate
from geex.model.loader import load_for_inference
from geex.model.sampling import SamplingConfig
from geex.serve.models import GeexPromptTokens, resolve_fim_style
from geex.tokenizer.fim import build_fim_ids
from geex.train.config import TrainConfig
from geex.train.trainer import train

TAG = "# language: Python\n"
WORDS = ["red", "green", "blue", "black", "white", "gold", "pink", "gray",
         "cyan", "lime", "navy", "teal", "plum", "rose", "sand", "snow"]  # fmt: skip


def infill_task(rng: random.Random) -> tuple[str, str, str]:
    """Prefix (the tag line alone), middle and suffix of one file: ``y``'s value is drawn
    from 16 words, so a model that reads left to right guesses it (1 in 16 at best) and one
    that reads the suffix knows it. Few enough files differ that a tiny model learns them
    within a test's budget: what is measured is whether it reads the suffix, not whether it
    copies words it never saw."""
    y = rng.choice(WORDS)
    return "", f"y = {y}\n", f"assert y == {y}\n"


HELD_OUT = [infill_task(random.Random(100_000 + i)) for i in range(100)]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("fim") / "corpus"
    folder.mkdir()
    rng = random.Random(0)
    for i in range(2000):
        (folder / f"f{i:04d}.py").write_text("".join(infill_task(rng)))
    return folder


def pack(corpus: Path, out: Path, fim_rate: str) -> Path:
    """`geex data` as a user runs it, without deduplication: the files repeat on purpose. The corpus is named relative to its folder:
    a file's id (``corpus::f0001.py``), and with it its FIM cut, is then the same in every
    temporary folder, and so is the trained model."""
    options = ["--no-dedup", "--filters", "none", "--no-pii", "--vocab-size", "600"]
    options += ["--validation-fraction", "0.02", "--workers", "1", "--fim-rate", fim_rate]
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(corpus.parent)
        assert main(["data", corpus.name, "--out", str(out.resolve()), *options]) == 0
    return out


def train_tiny(data: Path, out: Path, steps: int) -> Path:
    config = TrainConfig(
        data=str(data),
        out=str(out),
        preset="tiny",
        model={"n_layer": 2, "d_model": 64, "n_head": 4, "max_seq_len": 64},
        seq_len=64,
        global_batch_tokens=1024,
        micro_batch_size=16,
        max_steps=steps,
        reset_at_documents=True,
        eval_every=0,
        checkpoint_every=0,
        device="cpu",
        optim={"warmup_steps": 10, "lr": 3e-3},
    )
    train(config, show_progress=False)
    return out / "model"


def infills(model_folder: Path, *, fim: bool) -> list[str]:
    """Greedy infills of the held-out files: from the prompt `geex serve` builds for a Geex
    model (the tag on the prefix), or, without FIM, from the prefix alone."""
    loaded = load_for_inference(model_folder, device="cpu")
    tokenizer = loaded.tokenizer
    tokens = GeexPromptTokens(tokenizer)
    _, marker_ids = resolve_fim_style("auto", tokens.vocab, "geex")
    if fim:
        prompts = [
            build_fim_ids(tokenizer.encode(TAG + p), tokenizer.encode(s), marker_ids)
            for p, _, s in HELD_OUT
        ]
    else:
        prompts = [tokenizer.encode(TAG + p) for p, _, _ in HELD_OUT]
    sampling = SamplingConfig(max_new_tokens=10)
    outputs = generate(loaded.model, prompts, sampling, eos_id=tokenizer.eod_id)
    # Single-line infilling as InCoder and SantaCoder judge it: the infill's first line.
    return [tokenizer.decode(out[0]).split("\n")[0] + "\n" for out in outputs]


def exact_match(texts: list[str]) -> float:
    return sum(text == middle for text, (_, middle, _) in zip(texts, HELD_OUT, strict=True)) / len(
        texts
    )


def well_formed(texts: list[str]) -> float:
    """The share of infills that are one ``y = WORD`` line: the middle's shape, whatever word."""
    lines = {f"y = {word}\n" for word in WORDS}
    return sum(text in lines for text in texts) / len(texts)


STEPS = 600  # a fixed budget: the learning-rate schedule, and so the result, depends on it


@pytest.fixture(scope="module")
def fim_model(corpus, tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("fim")
    return train_tiny(pack(corpus, work / "data", "0.5"), work / "run", STEPS)


def test_a_fim_trained_model_infills_what_no_left_to_right_reading_can(fim_model):
    """Fast half: ``y``'s value is drawn apart from the prefix, so no model that reads only the
    prefix matches more than 1 middle in 16 on average; the FIM model, given the prompt
    `geex serve` sends, writes a ``y = WORD`` line, and mostly the right word."""
    texts = infills(fim_model, fim=True)
    assert well_formed(texts) >= 0.9, texts[:10]
    assert exact_match(texts) >= 1 / 16 + 0.3, texts[:10]


@pytest.mark.slow
def test_fim_training_beats_left_to_right_at_infilling_by_a_clear_margin(
    corpus, fim_model, tmp_path
):
    """The same model trained without FIM, read at its best (the prefix completed, as
    `geex serve --fim-style prefix-only` does; the FIM markers are tokens it never saw).
    Measured on x86-64 CPU: exact match 1.00 with FIM, 0.09 without (it always writes the
    word it saw most)."""
    without = train_tiny(pack(corpus, tmp_path / "data", "0"), tmp_path / "run", STEPS)
    assert well_formed(infills(without, fim=True)) <= 0.1  # markers it never saw
    fim_match = exact_match(infills(fim_model, fim=True))
    plain_match = exact_match(infills(without, fim=False))
    assert fim_match >= plain_match + 0.3, (fim_match, plain_match)
