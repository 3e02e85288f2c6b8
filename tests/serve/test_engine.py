"""The serving engine: the same text as ``complete()``, streaming, n samples, cancellation,
a bounded queue, and errors that reach the client instead of killing the engine."""

from __future__ import annotations

import asyncio

import pytest

from geex.errors import GeexError
from geex.eval.problems import load_embedded
from geex.languages import get_language
from geex.model import ModelConfig, build_model
from geex.model.sampling import SamplingConfig
from geex.serve.completion import complete
from geex.serve.engine import Engine, EngineBusy, GenerationParams
from geex.serve.geex_runner import GeexRunner, geex_codec
from geex.tokenizer import train_tokenizer

PROMPTS = ["def add(a, b):\n", "int main() {\n    int x = ", "# language: Python\nimport os\n"]


@pytest.fixture(scope="module")
def tokenizer():
    texts = [p.prompt + p.canonical_solution for p in load_embedded(["python", "cpp"])]
    return train_tokenizer(texts * 3, vocab_size=600, languages=["python", "cpp"])


@pytest.fixture(scope="module")
def model(tokenizer):
    config = ModelConfig(n_layer=2, n_head=2, d_model=32, max_seq_len=128,
                         vocab_size=tokenizer.vocab_size, init_std=0.1)  # fmt: skip
    return build_model(config, seed=0).eval()


@pytest.fixture
def engine(model, tokenizer):
    with Engine(GeexRunner(model, num_slots=4), geex_codec(tokenizer), max_queue=8) as running:
        yield running


@pytest.mark.parametrize("language", [None, "python", "cpp"])
def test_greedy_text_equals_complete(engine, model, tokenizer, language):
    lang = get_language(language) if language else None
    for prompt in PROMPTS:
        expected = complete(
            model,
            tokenizer,
            prompt,
            language=language,
            sampling=SamplingConfig(max_new_tokens=40, temperature=0),
            stop=["\n\n\n"],
            add_tag=False,
        )[0][0]
        params = GenerationParams(max_tokens=40, temperature=0, stop=("\n\n\n",), language=lang)
        [got] = engine.generate(tokenizer.encode(prompt), params)
        assert got.text == expected.text
        assert got.finish_reason == expected.finish_reason
        assert got.num_tokens == expected.num_tokens


def test_streamed_pieces_join_to_the_result(engine, tokenizer):
    params = GenerationParams(max_tokens=30, temperature=0, language=get_language("python"))

    async def run():
        [handle] = engine.submit(tokenizer.encode(PROMPTS[0]), params)
        pieces = [piece async for piece in handle.stream()]
        return pieces, await handle.result()

    pieces, result = asyncio.run(run())
    assert "".join(pieces) == result.text
    assert result.num_tokens >= 1


def test_seeded_samples_are_reproducible_and_differ(engine, tokenizer):
    params = GenerationParams(max_tokens=20, temperature=1.0, seed=7)
    ids = tokenizer.encode(PROMPTS[1])
    first = [c.text for c in engine.generate(ids, params, n=3)]
    again = [c.text for c in engine.generate(ids, params, n=3)]
    assert first == again
    assert len(set(first)) > 1


def test_a_newer_request_for_the_same_document_cancels_the_older(model, tokenizer):
    with Engine(GeexRunner(model, num_slots=1), geex_codec(tokenizer)) as engine:
        ids = tokenizer.encode(PROMPTS[0])
        params = GenerationParams(max_tokens=100, temperature=0)
        blocker = engine.submit(ids, params)  # keeps the engine busy meanwhile
        [older] = engine.submit(ids, params, document="a.py")
        [newer] = engine.submit(ids, params, document="a.py")
        assert older.wait(60).finish_reason == "cancelled"
        assert newer.wait(60).finish_reason != "cancelled"
        blocker[0].wait(60)


def test_a_full_queue_is_refused_with_a_retry_hint(model, tokenizer):
    with Engine(GeexRunner(model, num_slots=1), geex_codec(tokenizer), max_queue=2) as engine:
        ids = tokenizer.encode(PROMPTS[0])
        params = GenerationParams(max_tokens=100, temperature=0)
        handles = []
        with pytest.raises(EngineBusy) as busy:
            for _ in range(10):
                handles += engine.submit(ids, params)
        assert busy.value.retry_after >= 1
        for handle in handles:
            handle.cancel()


def test_a_prompt_over_the_context_is_refused(engine, tokenizer):
    with pytest.raises(GeexError, match="context is 128 tokens"):
        engine.submit([1] * 128, GenerationParams())
    with pytest.raises(GeexError, match="empty"):
        engine.submit([], GenerationParams())


def test_bad_sampling_is_refused_before_queueing():
    with pytest.raises(GeexError, match="temperature"):
        GenerationParams(temperature=float("nan"))
    with pytest.raises(GeexError, match="max_tokens"):
        GenerationParams(max_tokens=0)


def test_a_failing_model_fails_the_request_not_the_engine(model, tokenizer):
    class Broken(GeexRunner):
        calls = 0

        def prefill(self, slot, token_ids, start):
            Broken.calls += 1
            if Broken.calls == 1:
                raise RuntimeError("out of memory")
            return super().prefill(slot, token_ids, start)

    with Engine(Broken(model, num_slots=1), geex_codec(tokenizer)) as engine:
        ids = tokenizer.encode(PROMPTS[0])
        [failed] = engine.submit(ids, GenerationParams(max_tokens=4, temperature=0))
        with pytest.raises(RuntimeError, match="out of memory"):
            failed.wait(60)
        [ok] = engine.submit(ids, GenerationParams(max_tokens=4, temperature=0))
        assert ok.wait(60).num_tokens >= 1
