"""The serving engine: the same text as ``complete()``, streaming, n samples, cancellation,
a bounded queue, and errors that reach the client instead of killing the engine."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import threading

import pytest

from geex.errors import GeexError
from geex.eval.problems import load_embedded
from geex.languages import get_language
from geex.model import ModelConfig, build_model
from geex.model.sampling import SamplingConfig
from geex.serve.completion import complete
from geex.serve.engine import Completion, Engine, EngineBusy, GenerationParams
from geex.serve.geex_runner import GeexCodec, GeexRunner
from geex.tokenizer import train_tokenizer
from geex.tokenizer.healing import heal_prompt

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
    with Engine(GeexRunner(model, num_slots=4), GeexCodec(tokenizer), max_queue=8) as running:
        yield running


@pytest.mark.parametrize(
    "language, penalty", [(None, 1.0), ("python", 1.0), ("cpp", 1.0), ("python", 1.3)]
)
def test_greedy_text_equals_complete(engine, model, tokenizer, language, penalty):
    """The server's engine decodes as ``generate`` does, a repetition penalty included."""
    lang = get_language(language) if language else None
    repeats = {"repetition_penalty": penalty, "repetition_window": 16}
    changed = []  # with a penalty: whether it changed each prompt's text
    for prompt in PROMPTS:
        expected = complete(
            model,
            tokenizer,
            prompt,
            language=language,
            sampling=SamplingConfig(max_new_tokens=40, temperature=0, **repeats),
            stop=["\n\n\n"],
            add_tag=False,
        )[0][0]
        params = GenerationParams(max_tokens=40, temperature=0, stop=("\n\n\n",), language=lang,
                                  **repeats)  # fmt: skip
        [got] = engine.generate(tokenizer.encode(prompt), params)
        assert got.text == expected.text
        assert got.finish_reason == expected.finish_reason
        assert got.num_tokens == expected.num_tokens
        if penalty != 1:
            unpenalized = dataclasses.replace(params, repetition_penalty=1.0)
            changed.append(
                engine.generate(tokenizer.encode(prompt), unpenalized)[0].text != got.text
            )
    assert all(changed)


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


def test_the_largest_seed_draws_its_second_sample_from_seed_zero(engine, tokenizer):
    """Sample i draws from seed + i modulo 2**64, the generator's seeds: no overflow."""
    ids = tokenizer.encode(PROMPTS[1])
    largest = GenerationParams(max_tokens=12, temperature=1.0, seed=2**64 - 1)
    zero = GenerationParams(max_tokens=12, temperature=1.0, seed=0)
    texts = [c.text for c in engine.generate(ids, largest, n=2)]
    assert texts[1] == engine.generate(ids, zero)[0].text


def test_a_newer_request_for_the_same_document_cancels_the_older(model, tokenizer):
    with Engine(GeexRunner(model, num_slots=1), GeexCodec(tokenizer)) as engine:
        ids = tokenizer.encode(PROMPTS[0])
        params = GenerationParams(max_tokens=100, temperature=0)
        blocker = engine.submit(ids, params)  # keeps the engine busy meanwhile
        [older] = engine.submit(ids, params, document="a.py")
        [newer] = engine.submit(ids, params, document="a.py")
        assert older.wait(60).finish_reason == "cancelled"
        assert newer.wait(60).finish_reason != "cancelled"
        blocker[0].wait(60)


def test_a_full_queue_is_refused_with_a_retry_hint(model, tokenizer):
    with Engine(GeexRunner(model, num_slots=1), GeexCodec(tokenizer), max_queue=2) as engine:
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


def test_stop_sequences_are_bounded_for_every_protocol():
    GenerationParams(stop=("x" * 256,) * 16)
    with pytest.raises(GeexError, match="^stop: at most 16 sequences .* got 20000"):
        GenerationParams(stop=tuple(f"s{i}" for i in range(20_000)))
    with pytest.raises(GeexError, match=r"^stop: .*\(the longest 257 characters\)"):
        GenerationParams(stop=("}", "x" * 257))


def test_a_failing_model_fails_the_request_not_the_engine(model, tokenizer):
    class Broken(GeexRunner):
        calls = 0

        def prefill(self, slot, token_ids, start):
            Broken.calls += 1
            if Broken.calls == 1:
                raise RuntimeError("out of memory")
            return super().prefill(slot, token_ids, start)

    with Engine(Broken(model, num_slots=1), GeexCodec(tokenizer)) as engine:
        ids = tokenizer.encode(PROMPTS[0])
        [failed] = engine.submit(ids, GenerationParams(max_tokens=4, temperature=0))
        with pytest.raises(RuntimeError, match="out of memory"):
            failed.wait(60)
        [ok] = engine.submit(ids, GenerationParams(max_tokens=4, temperature=0))
        assert ok.wait(60).num_tokens >= 1


class Recording(GeexRunner):
    """A runner that records what the engine asks of it; its decode steps wait for ``gate``."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.batches: list[list[int]] = []
        self.prefills: list[tuple[int, int, int]] = []  # slot, start, new tokens
        self.calls: list[str] = []
        self.copies = 0
        self.gate, self.decoding = threading.Event(), threading.Event()
        self.gate.set()

    def prefill(self, slot, token_ids, start):
        self.prefills.append((slot, start, len(token_ids)))
        self.calls.append("prefill")
        return super().prefill(slot, token_ids, start)

    def decode(self, slots, token_ids, positions):
        self.decoding.set()
        assert self.gate.wait(60)
        self.batches.append(list(slots))
        self.calls.append("decode")
        return super().decode(slots, token_ids, positions)

    def copy_slot(self, source, target, length):
        self.copies += 1
        super().copy_slot(source, target, length)


class WithoutSwap:
    """Only the ``Runner`` protocol: the engine cannot move sequences between slots."""

    def __init__(self, inner: GeexRunner):
        self.inner = inner
        self.context_length, self.vocab_size = inner.context_length, inner.vocab_size
        self.num_slots = inner.num_slots

    def prefill(self, slot, token_ids, start):
        return self.inner.prefill(slot, token_ids, start)

    def decode(self, slots, token_ids, positions):
        return self.inner.decode(slots, token_ids, positions)

    def copy_slot(self, source, target, length):
        self.inner.copy_slot(source, target, length)


# Each request its own length and stop rules, so that rows of one batch end differently.
MIXED = [
    GenerationParams(max_tokens=m, temperature=0, stop=stop, language=lang)
    for m, stop, lang in [
        (5, (), None),
        (23, ("\n\n",), get_language("python")),
        (40, (), get_language("cpp")),
        (40, ("(",), None),
    ]
]


def _mixed_requests() -> list[tuple[str, GenerationParams]]:
    return [(p, params) for p in PROMPTS for params in MIXED]


@pytest.mark.parametrize("swap", [True, False])
def test_concurrent_greedy_texts_equal_each_request_alone(model, tokenizer, swap):
    with Engine(GeexRunner(model, num_slots=1), GeexCodec(tokenizer)) as engine:
        expected = [engine.generate(tokenizer.encode(p), q)[0] for p, q in _mixed_requests()]
    runner = Recording(model, num_slots=4)
    with Engine(runner if swap else WithoutSwap(runner), GeexCodec(tokenizer)) as engine:
        handles = [engine.submit(tokenizer.encode(p), q)[0] for p, q in _mixed_requests()]
        got = [handle.wait(60) for handle in handles]
    assert got == expected
    assert {c.finish_reason for c in got} >= {"length", "stop"}
    sizes = [len(batch) for batch in runner.batches]
    assert max(sizes) == 4  # several requests share each forward pass
    # Sequences leave (the batch shrinks) and queued ones join (it grows again).
    assert any(a > b for a, b in itertools.pairwise(sizes))
    assert any(a < b for a, b in itertools.pairwise(sizes))
    if swap:  # running sequences sit in the lowest slots: decode reads the pool in place
        assert all(batch == list(range(len(batch))) for batch in runner.batches)


def sent(tokenizer, ids: list[int]) -> list[int]:
    """The ids the engine prefills for a prompt: its last pre-token is healed, spelled again
    by the samples (geex.tokenizer.healing)."""
    return heal_prompt(tokenizer, ids).ids


@pytest.mark.parametrize("swap", [True, False])
def test_a_shared_prefix_is_not_prefilled_again(model, tokenizer, swap):
    first = tokenizer.encode(PROMPTS[0] + "    return a")
    second = first + tokenizer.encode(" + b\n\nprint(add(1, 2))")
    params = GenerationParams(max_tokens=10, temperature=0)
    runner = Recording(model, num_slots=2)
    with Engine(runner if swap else WithoutSwap(runner), GeexCodec(tokenizer)) as engine:
        engine.generate(tokenizer.encode(PROMPTS[1]), params)  # another file's cache
        engine.generate(first, params)
        before = engine.stats()
        [reused] = engine.generate(second, params)
        after = engine.stats()
    _, start, new = runner.prefills[-1]
    assert start >= len(sent(tokenizer, first)) and start + new == len(sent(tokenizer, second))
    assert after["prefix_reused_tokens"] - before["prefix_reused_tokens"] == start
    assert after["prefill_tokens"] - before["prefill_tokens"] == new
    assert after["prefix_hits"] == before["prefix_hits"] + 1
    with Engine(GeexRunner(model, num_slots=2), GeexCodec(tokenizer)) as fresh:
        assert fresh.generate(second, params) == [reused]


def test_the_same_prompt_again_prefills_one_token(model, tokenizer):
    ids = tokenizer.encode(PROMPTS[1])
    runner = Recording(model, num_slots=1)
    with Engine(runner, GeexCodec(tokenizer)) as engine:
        params = GenerationParams(max_tokens=8, temperature=0)
        assert engine.generate(ids, params) == engine.generate(ids, params)
    # Logits need one position computed.
    assert runner.prefills[-1] == (0, len(sent(tokenizer, ids)) - 1, 1)


@pytest.mark.parametrize("swap", [True, False])
def test_n_samples_share_one_prefill(model, tokenizer, swap):
    runner = Recording(model, num_slots=4)
    params = GenerationParams(max_tokens=12, temperature=1.0, seed=3)
    with Engine(runner if swap else WithoutSwap(runner), GeexCodec(tokenizer)) as engine:
        samples = engine.generate(tokenizer.encode(PROMPTS[2]), params, n=4)
    assert len(runner.prefills) == 1 and runner.copies == 3
    with Engine(GeexRunner(model, num_slots=1), GeexCodec(tokenizer)) as one_slot:
        assert one_slot.generate(tokenizer.encode(PROMPTS[2]), params, n=4) == samples
    assert len({c.text for c in samples}) > 1


def test_a_seeded_sample_does_not_depend_on_its_batch_mates(model, tokenizer):
    ids = tokenizer.encode(PROMPTS[0])
    params = GenerationParams(max_tokens=20, temperature=0.9, seed=11)
    with Engine(GeexRunner(model, num_slots=1), GeexCodec(tokenizer)) as engine:
        alone = engine.generate(ids, params, n=3)
    with Engine(GeexRunner(model, num_slots=2), GeexCodec(tokenizer)) as engine:
        others = [
            engine.submit(tokenizer.encode(p), GenerationParams(max_tokens=30, temperature=1.0))
            for p in PROMPTS
        ]
        together = engine.generate(ids, params, n=3)  # more samples than slots: admitted in turns
        for handles in others:
            [h.wait(60) for h in handles]
    assert together == alone


def test_cancelling_frees_the_slot_at_the_next_step(model, tokenizer):
    runner = Recording(model, num_slots=1)
    runner.gate.clear()
    with Engine(runner, GeexCodec(tokenizer)) as engine:
        ids = tokenizer.encode(PROMPTS[0])
        [long] = engine.submit(ids, GenerationParams(max_tokens=100, temperature=0))
        [queued] = engine.submit(ids, GenerationParams(max_tokens=3, temperature=0))
        assert runner.decoding.wait(60)
        assert engine.stats()["running"] == 1 and engine.stats()["queued"] == 1
        long.cancel()
        runner.gate.set()
        cancelled = long.wait(60)
        assert cancelled.finish_reason == "cancelled" and cancelled.num_tokens <= 2
        assert queued.wait(60).finish_reason == "length"
        assert engine.stats()["decoded_tokens"] <= 1 + 2  # the long one stopped at once
        assert engine.stats()["running"] == 0


def test_superseded_requests_leave_a_full_queue(model, tokenizer):
    runner = Recording(model, num_slots=1)
    runner.gate.clear()
    with Engine(runner, GeexCodec(tokenizer), max_queue=2) as engine:
        ids = tokenizer.encode(PROMPTS[0])
        params = GenerationParams(max_tokens=5, temperature=0)
        [blocker] = engine.submit(ids, params)
        assert runner.decoding.wait(60)  # running, not queued
        [first] = engine.submit(ids, params, document="a.py")
        [second] = engine.submit(ids, params, document="a.py")  # the queue is full now
        [third] = engine.submit(ids, params, document="a.py")  # takes the first's place
        [other] = engine.submit(ids, params)  # takes the second's
        try:
            with pytest.raises(EngineBusy):
                engine.submit(ids, params)
        finally:
            runner.gate.set()
        assert [h.wait(60).finish_reason for h in (first, second, third, other)] == [
            "cancelled",
            "cancelled",
            "length",
            "length",
        ]
        assert blocker.wait(60).finish_reason == "length"


def test_a_long_prompt_is_prefilled_in_chunks_between_decode_steps(model, tokenizer):
    runner = Recording(model, num_slots=3)
    runner.gate.clear()
    long_ids = tokenizer.encode(PROMPTS[2] * 20)[:70]
    assert len(long_ids) == 70
    sampled = GenerationParams(max_tokens=6, temperature=1.0, seed=5)
    with Engine(runner, GeexCodec(tokenizer)) as engine:
        engine.prefill_budget = 16
        short = tokenizer.encode(PROMPTS[0])
        [running] = engine.submit(short, GenerationParams(max_tokens=30, temperature=0))
        assert runner.decoding.wait(60)
        chunked = engine.submit(long_ids, sampled, n=2)
        runner.gate.set()
        results = [h.wait(60) for h in chunked]
        running.wait(60)
    assert runner.prefills[0] == (0, 0, len(sent(tokenizer, short)))
    starts = [(start, new) for _, start, new in runner.prefills[1:]]
    assert starts == [
        (0, 16),
        (16, 16),
        (32, 16),
        (48, 16),
        (64, len(sent(tokenizer, long_ids)) - 64),
    ]
    assert runner.copies == 1
    # The running sequence decodes between the chunks.
    prefill_calls = [i for i, call in enumerate(runner.calls) if call == "prefill"][1:]
    assert all("decode" in runner.calls[a:b] for a, b in itertools.pairwise(prefill_calls))
    with Engine(GeexRunner(model, num_slots=2), GeexCodec(tokenizer)) as whole:
        assert whole.generate(long_ids, sampled, n=2) == results


def test_alternating_documents_keep_their_caches(model, tokenizer):
    """Two files edited in turn: a prompt without a prefix match takes the slot written
    longest ago, so each file's cache survives the other's requests."""
    first = tokenizer.encode(PROMPTS[0] + "    return a + b\n")
    second = tokenizer.encode(PROMPTS[1] + "1;\n    return x;\n}\n")
    params = GenerationParams(max_tokens=4, temperature=0)
    with Engine(GeexRunner(model, num_slots=2), GeexCodec(tokenizer)) as engine:
        texts = [engine.generate(ids, params) for ids in (first, second, first, second)]
        stats = engine.stats()
    assert texts[0] == texts[2] and texts[1] == texts[3]
    assert stats["prefix_hits"] == 2
    reused = len(sent(tokenizer, first)) - 1 + len(sent(tokenizer, second)) - 1
    assert stats["prefix_reused_tokens"] == reused


def test_a_reader_that_goes_away_cancels_its_sequence(model, tokenizer):
    async def run():
        with Engine(GeexRunner(model, num_slots=1), GeexCodec(tokenizer)) as engine:
            params = GenerationParams(max_tokens=100, temperature=0)
            [closed] = engine.submit(tokenizer.encode(PROMPTS[0]), params)
            async with contextlib.aclosing(closed.stream()) as pieces:
                async for _ in pieces:
                    break
            [dropped] = engine.submit(tokenizer.encode(PROMPTS[1]), params)

            read = []

            async def reader():
                async for piece in dropped.stream():
                    read.append(piece)

            task = asyncio.create_task(reader())
            while not read and not dropped.done:
                await asyncio.sleep(0.001)
            task.cancel()  # as the server does when the client disconnects
            return await closed.result(), await dropped.result()

    closed, dropped = asyncio.run(run())
    assert closed.finish_reason == "cancelled" and closed.num_tokens < 100
    assert dropped.finish_reason == "cancelled" and dropped.num_tokens < 100


def test_rows_sampled_together_keep_their_own_settings(model, tokenizer):
    ids = tokenizer.encode(PROMPTS[2])
    greedy = GenerationParams(max_tokens=15, temperature=0)
    top_1 = GenerationParams(max_tokens=15, temperature=1.5, top_k=1)  # greedy in effect
    wide = GenerationParams(max_tokens=15, temperature=1.5)
    with Engine(GeexRunner(model, num_slots=8), GeexCodec(tokenizer)) as engine:
        [expected] = engine.generate(ids, greedy)
        handles = [*engine.submit(ids, wide, n=4), *engine.submit(ids, top_1, n=3)]
        results = [handle.wait(60) for handle in handles]
    assert [r.text for r in results[4:]] == [expected.text] * 3
    assert any(r.text != expected.text for r in results[:4])


def test_closing_cancels_what_runs_and_what_waits(model, tokenizer):
    runner = Recording(model, num_slots=1)
    runner.gate.clear()
    engine = Engine(runner, GeexCodec(tokenizer))
    ids = tokenizer.encode(PROMPTS[0])
    [running] = engine.submit(ids, GenerationParams(max_tokens=100, temperature=0))
    [waiting] = engine.submit(ids, GenerationParams(max_tokens=100, temperature=0))
    assert runner.decoding.wait(60)
    runner.gate.set()
    engine.close()
    assert running.wait(0).finish_reason == "cancelled"
    assert waiting.wait(0) == Completion("", 0, "cancelled")
    with pytest.raises(GeexError, match="stopped"):
        engine.submit(ids, GenerationParams())


def test_samples_cancelled_during_a_chunked_prefill(model, tokenizer):
    on_prefill = {}

    class Hooked(Recording):
        def prefill(self, slot, token_ids, start):
            on_prefill.pop(start, lambda: None)()
            return super().prefill(slot, token_ids, start)

    runner = Hooked(model, num_slots=3)
    long_ids = tokenizer.encode(PROMPTS[2] * 20)[:40]
    sampled = GenerationParams(max_tokens=6, temperature=1.0, seed=5)
    with Engine(runner, GeexCodec(tokenizer)) as engine:
        engine.prefill_budget = 8
        kept, dropped = engine.submit(long_ids, sampled, n=2)
        on_prefill[8] = dropped.cancel  # while the second chunk is computed
        assert dropped.wait(60) == Completion("", 0, "cancelled")
        result = kept.wait(60)
        assert runner.copies == 0  # the cancelled sample's slot was given back
        # Every sample cancelled: the prefill stops, its slot keeps the part done.
        other = tokenizer.encode(PROMPTS[1] * 20)[:40]
        [gone] = engine.submit(other, sampled)
        on_prefill[16] = gone.cancel
        assert gone.wait(60).finish_reason == "cancelled"
        before = engine.stats()
        [again] = engine.submit(other, sampled)
        again.wait(60)
        reused = engine.stats()["prefix_reused_tokens"] - before["prefix_reused_tokens"]
        assert reused == 24 and engine.stats()["running"] == 0
    with Engine(GeexRunner(model, num_slots=2), GeexCodec(tokenizer)) as whole:
        assert whole.generate(long_ids, sampled, n=2)[0] == result


def test_a_tiny_temperature_decodes_greedily(engine, tokenizer):
    ids = tokenizer.encode(PROMPTS[0])
    [greedy] = engine.generate(ids, GenerationParams(max_tokens=12, temperature=0))
    for seed in (None, 3):  # rows sampled in a group, and a seeded row drawn alone
        tiny = GenerationParams(max_tokens=12, temperature=1e-39, seed=seed)
        assert engine.generate(ids, tiny) == [greedy]


def test_samples_taken_from_the_queue_finish_when_a_step_fails_before_starting_them(
    model, tokenizer
):
    class FailingSwap(Recording):
        fail = False

        def swap_slots(self, a, b):
            if self.fail:
                raise RuntimeError("out of memory in swap")
            super().swap_slots(a, b)

    runner = FailingSwap(model, num_slots=3)
    runner.gate.clear()
    ids = tokenizer.encode(PROMPTS[0])
    with Engine(runner, GeexCodec(tokenizer)) as engine:
        first, second = engine.submit(ids, GenerationParams(max_tokens=100, seed=1), n=2)
        assert runner.decoding.wait(60)  # both run, in slots 0 and 1
        [queued] = engine.submit(ids, GenerationParams(max_tokens=4, temperature=0))
        first.cancel()  # next step: taken from the queue, then slot 1 moves down and fails
        runner.fail = True
        runner.gate.set()
        for handle in (second, queued):
            with pytest.raises(RuntimeError, match="out of memory in swap"):
                handle.wait(60)
        runner.fail = False
        [after] = engine.submit(ids, GenerationParams(max_tokens=4, temperature=0))
        assert after.wait(60).num_tokens >= 1


def test_a_handle_finishes_once():
    from geex.serve import engine, handle

    assert engine.RequestHandle is handle.RequestHandle  # the name protocols import
    handle = handle.RequestHandle(prompt_tokens=3)
    handle.finish(Completion("x", 1, "stop"))
    handle.finish(None, RuntimeError("a later failure of the same step"))
    assert handle.wait(0) == Completion("x", 1, "stop")


def test_several_samples_at_a_greedy_temperature_are_refused():
    """Below the greedy threshold n samples would be n copies of one completion."""
    from geex.model.sampling import check_sampling

    with pytest.raises(GeexError, match="identical greedy completions"):
        check_sampling(temperature=1e-6, top_p=1.0, max_new_tokens=4, num_samples=3)
