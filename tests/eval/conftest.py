"""Fixtures of the evaluation tests: an evaluator, tasks made from inline programs, and a tiny
Geex checkpoint to generate with."""

from __future__ import annotations

import pytest

from geex.eval.backends import Sample
from geex.eval.evaluator import EvalConfig, Evaluator
from geex.eval.problems import Problem, humanevalx_language, load_embedded
from geex.eval.runners import RunSettings
from geex.eval.tasks import Task
from geex.model import ModelConfig, build_model
from geex.model.checkpoint import save_checkpoint
from geex.tokenizer import train_tokenizer

LANGUAGES = ["python", "go"]  # the checkpoint's: an indented language and a brace language


@pytest.fixture(scope="module")
def evaluator():
    """One evaluator per test module: 2 workers, 5 s per program, the shared warm caches."""
    with Evaluator(EvalConfig(workers=2, settings=RunSettings(timeout=5.0))) as ev:
        yield ev


def inline_sample(
    language: str,
    prompt: str,
    completion: str = "",
    test: str = "",
    *,
    task_id: str | None = None,
    declaration: str = "",
    **extra,
) -> Sample:
    """A sample whose assembled program is ``prompt + completion + test`` in the reference
    layout of ``language`` (a HumanEval-X id or name)."""
    lang = humanevalx_language(language)
    problem = Problem(
        task_id=task_id or f"Inline-{lang.key}/0",
        language=lang,
        prompt=prompt,
        declaration=declaration,
        canonical_solution=completion,
        test=test,
        extra=extra,
    )
    return Sample(Task(problem.task_id, problem, prompt), 0, completion)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A tiny random Geex model and a tokenizer trained on a few programs, saved together."""
    texts = [p.prompt + p.canonical_solution for p in load_embedded(LANGUAGES)]
    tokenizer = train_tokenizer(texts * 3, vocab_size=600, languages=LANGUAGES)
    # init_std 0.1 rather than 0.02: varied greedy text rather than one repeated token.
    config = ModelConfig(n_layer=2, n_head=2, d_model=32, max_seq_len=512,
                         vocab_size=tokenizer.vocab_size, init_std=0.1)  # fmt: skip
    folder = tmp_path_factory.mktemp("backends") / "tiny-geex"
    save_checkpoint(build_model(config, seed=0).eval(), folder, tokenizer=tokenizer)
    return folder
