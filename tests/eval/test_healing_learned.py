"""Token healing where it matters: a model trained on files whose function bodies follow
``"):\\n    "`` (one token to Geex's tokenizer) is prompted, as an editor or HumanEval-X prompts
it, up to the line break. Healed, it writes the body; from the raw prompt it reads a token
that training never showed it before a body. `pytest tests/eval/test_healing_learned.py`"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from geex.cli import main
from geex.eval.backends import Sampling, StopRule
from geex.eval.backends_geex import GeexBackend
from geex.languages import get_language
from geex.model.loader import load_for_inference
from geex.serve.completion import complete
from geex.train.config import TrainConfig
from geex.train.trainer import train

TAG = "# language: Python\n"
NAMES = ["scale", "shift", "clamp", "twice", "halve", "wrap", "norm", "step"]


def source(rng: random.Random) -> str:
    name, n = rng.choice(NAMES), rng.randrange(100)
    return f"def {name}_{n}(x):\n    return x * {n}\n"


PROMPTS = [TAG + f"def {name}_{100 + i}(x):\n" for i, name in enumerate(NAMES)]


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("healing")
    corpus = work / "corpus"
    corpus.mkdir()
    rng = random.Random(0)
    for i in range(1500):
        (corpus / f"f{i:04d}.py").write_text(source(rng) + "\n\n" + source(rng))
    options = ["--no-dedup", "--filters", "none", "--no-pii", "--vocab-size", "600"]
    options += ["--validation-fraction", "0.02", "--workers", "1", "--fim-rate", "0"]
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(work)
        assert main(["data", "corpus", "--out", str(work / "data"), *options]) == 0
    config = TrainConfig(
        data=str(work / "data"),
        out=str(work / "run"),
        preset="tiny",
        model={"n_layer": 2, "d_model": 64, "n_head": 4, "max_seq_len": 64},
        seq_len=64,
        global_batch_tokens=1024,
        micro_batch_size=16,
        max_steps=300,
        reset_at_documents=True,
        eval_every=0,
        checkpoint_every=0,
        device="cpu",
        precision="fp32",
        optim={"warmup_steps": 10, "lr": 3e-3},
    )
    train(config, show_progress=False)
    return work / "run" / "model"


def bodies(backend: GeexBackend, token_healing: bool = True) -> list[str]:
    stop = StopRule.for_language(get_language("python"))
    sampling = Sampling(max_new_tokens=12, token_healing=token_healing)
    out = backend.generate(PROMPTS, [stop] * len(PROMPTS), sampling)
    return [samples[0] for samples in out]


def test_a_prompt_cut_after_the_line_break_gets_its_body_when_healed(model):
    loaded = load_for_inference(model, device="cpu")
    tokenizer = loaded.tokenizer
    pieces = [tokenizer.decode([i]) for i in tokenizer.encode("def f(x):\n    return x\n")]
    assert "):\n    " in pieces  # the prompt's "):" + "\n" never came before a body
    healed = bodies(GeexBackend(loaded.model, tokenizer))
    raw = bodies(GeexBackend(loaded.model, tokenizer), token_healing=False)
    right = [text.startswith("    return x * ") for text in healed]
    assert sum(right) >= len(PROMPTS) - 1, healed
    assert sum(text.startswith("    return x * ") for text in raw) < sum(right), raw
    # geex generate and geex serve heal the same way (complete() backs both up).
    [[completion]] = complete(loaded.model, tokenizer, PROMPTS[0], add_tag=False)
    assert completion.text.startswith(healed[0])
