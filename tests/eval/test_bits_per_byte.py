"""Bits per byte of the reference programs: every token scored once, from its own context,
equal for a Geex checkpoint and its Hugging Face export. `pytest tests/eval/test_bits_per_byte.py`."""

from __future__ import annotations

import math
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # these tests only read local folders

import pytest
import torch

from geex.eval.backends_geex import GeexBackend
from geex.eval.bits_per_byte import reference_bits_per_byte, reference_program, windowed_nll
from geex.eval.problems import load_embedded
from geex.model.checkpoint import load_model
from geex.tokenizer import load_tokenizer
from tests.conftest import required_module
from tests.eval.conftest import LANGUAGES
from tests.eval.test_model_backends import hf_export


def next_token_model(vocab: int, context: int, calls: list[int]):
    """Logits that put (almost) all probability on ``previous + 1``: scoring 0, 1, 2, ... costs
    next to nothing unless a target is taken from the wrong position."""

    def logits_of(window: list[int]) -> torch.Tensor:
        assert len(window) <= context
        calls.append(len(window))
        return 40.0 * torch.nn.functional.one_hot(torch.tensor(window) + 1, vocab).float()

    return logits_of


@pytest.mark.parametrize("context", [2, 7, 16, 64])
def test_windows_score_every_token_once_at_its_own_position(context):
    ids = list(range(50))
    calls: list[int] = []
    assert windowed_nll(next_token_model(51, context, calls), ids, context) < 1e-9
    assert all(n >= min(context // 2, 49) for n in calls[1:])  # later windows keep context
    uniform = windowed_nll(lambda window: torch.zeros(len(window), 51), ids, context)
    assert uniform == pytest.approx(49 * math.log(51))  # 49 tokens predicted, each once


def test_a_context_of_one_token_is_refused():
    with pytest.raises(ValueError, match="nothing to predict from"):
        windowed_nll(lambda window: torch.zeros(len(window), 3), [0, 1, 2], 1)


@pytest.fixture(scope="module")
def geex_backend(checkpoint):
    return GeexBackend(load_model(checkpoint), load_tokenizer(checkpoint))


@pytest.fixture(scope="module")
def problems():
    return [p for p in load_embedded(LANGUAGES) if int(p.number) < 3]


def test_geex_backend_scores_each_text_after_the_end_of_document_token(geex_backend):
    text = "# language: Python\ndef add(a, b):\n    return a + b\n"
    tokenizer, model = geex_backend.tokenizer, geex_backend.model
    ids = [tokenizer.eod_id, *tokenizer.encode(text)]
    with torch.no_grad():
        logits = model(torch.tensor([ids[:-1]]))[0, :, : tokenizer.vocab_size]
    expected = -torch.log_softmax(logits, -1).gather(-1, torch.tensor(ids[1:])[:, None]).sum()
    [(nats, tokens)] = geex_backend.text_nll([text])
    assert tokens == len(ids) - 1
    assert nats == pytest.approx(float(expected), rel=1e-5)


def test_a_model_that_knows_nothing_needs_log2_vocab_bits_per_token(checkpoint, problems):
    """Zero weights give zero logits: uniform over the tokenizer's ids, the padding ids left
    out, whatever the model's padded vocabulary."""
    model = load_model(checkpoint)
    for parameter in model.parameters():
        torch.nn.init.zeros_(parameter)
    tokenizer = load_tokenizer(checkpoint)
    assert model.config.padded_vocab_size > tokenizer.vocab_size
    scores = reference_bits_per_byte(GeexBackend(model, tokenizer), problems)
    assert list(scores) == ["Python", "Go", "all"]
    for language in ("Python", "Go"):
        chosen = [p for p in problems if p.language.name == language]
        texts = [reference_program(p) for p in chosen]
        tokens = sum(len(tokenizer.encode(t)) for t in texts)
        nbytes = sum(len(t.encode()) for t in texts)
        assert scores[language] == {
            "bits_per_byte": pytest.approx(math.log2(tokenizer.vocab_size) * tokens / nbytes),
            "problems": 3,
            "bytes": nbytes,
            "tokens": tokens,
        }
    assert scores["all"]["bytes"] == scores["Python"]["bytes"] + scores["Go"]["bytes"]


def test_hugging_face_export_scores_as_the_geex_checkpoint(
    checkpoint, geex_backend, problems, tmp_path
):
    required_module("transformers")
    from geex.eval.backends_hf import HFBackend

    hf = HFBackend.load(str(hf_export(checkpoint, tmp_path / "hf")), device="cpu",
                        trust_remote_code=True)  # fmt: skip
    theirs = reference_bits_per_byte(hf, problems)
    ours = reference_bits_per_byte(geex_backend, problems)
    assert theirs.keys() == ours.keys()
    for group, row in ours.items():
        assert theirs[group]["tokens"] == row["tokens"]
        assert theirs[group]["bits_per_byte"] == pytest.approx(row["bits_per_byte"], rel=1e-4)


def test_a_tokenizer_without_start_token_is_scored_from_its_second_token(
    checkpoint, geex_backend, problems, tmp_path
):
    """No BOS and no EOS: each text's first token has nothing to be predicted from, so the
    score starts at its second token, as the model's own logits give it."""
    required_module("transformers")
    from geex.eval.backends_hf import HFBackend

    hf = HFBackend.load(str(hf_export(checkpoint, tmp_path / "hf")), device="cpu",
                        trust_remote_code=True)  # fmt: skip
    hf.tokenizer.bos_token = None
    hf.tokenizer.eos_token = None
    assert hf.tokenizer.bos_token_id is None and hf.tokenizer.eos_token_id is None
    text = reference_program(problems[0])
    [(nats, tokens)] = hf.text_nll([text])
    ids = geex_backend.tokenizer.encode(text)
    vocab = geex_backend.tokenizer.vocab_size

    def logits_of(window: list[int]) -> torch.Tensor:
        with torch.inference_mode():
            return geex_backend.model(torch.tensor([window]))[0, :, :vocab]

    assert tokens == len(ids) - 1
    expected = windowed_nll(logits_of, ids, geex_backend.model.config.max_seq_len)
    assert nats == pytest.approx(expected, rel=1e-4)
