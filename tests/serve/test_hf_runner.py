"""HFRunner: slot-cached prefill and decode over a transformers model give the logits of the
model's own full forward pass; HFCodec encodes prompts as the model's tokenizer does.

Run: pytest tests/serve/test_hf_runner.py -q
"""

from __future__ import annotations

import pytest
import torch

from geex.errors import GeexError
from geex.serve.hf_runner import HFCodec
from geex.serve.models import load_served_model
from tests.serve.hf_model_folder import CODE, STARCODER_FIM, save_tiny_hf_model

# fp32 on CPU: cached and uncached attention differ only by summation order.
ATOL = 1e-5


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    folder = save_tiny_hf_model(tmp_path_factory.mktemp("hf"), special_tokens=STARCODER_FIM)
    return load_served_model(folder, device="cpu", dtype="fp32", max_slots=3)


def full_logits(served, ids):
    model = served.runner.model
    with torch.inference_mode():
        return model(torch.tensor([ids])).logits[0, :, : served.runner.vocab_size].float()


def test_prefill_and_decode_equal_the_full_forward(served):
    runner, ids = served.runner, served.codec.encode(CODE[0])
    assert len(ids) > 6
    reference = full_logits(served, ids)
    torch.testing.assert_close(runner.prefill(0, ids[:4], 0), reference[3], atol=ATOL, rtol=0)
    # The rest on top of the cached first four positions.
    last = runner.prefill(0, ids[4:-2], 4)
    torch.testing.assert_close(last, reference[len(ids) - 3], atol=ATOL, rtol=0)
    runner.prefill(1, ids[:-1], 0)
    step = runner.decode([0, 1], [ids[-2], ids[-1]], [len(ids) - 2, len(ids) - 1])
    assert step.shape == (2, runner.vocab_size) and step.dtype == torch.float32
    torch.testing.assert_close(step[0], reference[-2], atol=ATOL, rtol=0)
    torch.testing.assert_close(step[1], reference[-1], atol=ATOL, rtol=0)


def test_copied_prefix_then_prefill_equals_a_fresh_prefill(served):
    runner = served.runner
    ids = served.codec.encode(CODE[1])
    other = served.codec.encode(CODE[2])
    runner.prefill(0, ids, 0)
    runner.copy_slot(0, 2, 5)
    assert runner.cached_length(2) == 5 and runner.cached_length(0) == len(ids)
    continued = runner.prefill(2, other, 5)
    fresh = runner.prefill(1, ids[:5] + other, 0)
    torch.testing.assert_close(continued, fresh, atol=ATOL, rtol=0)
    torch.testing.assert_close(
        continued, full_logits(served, ids[:5] + other)[-1], atol=ATOL, rtol=0
    )
    # The source keeps its own cache: decoding it still matches its full sequence.
    step = runner.decode([0], [other[0]], [len(ids)])
    torch.testing.assert_close(step[0], full_logits(served, ids + other[:1])[-1], atol=ATOL, rtol=0)


def test_prefill_at_an_earlier_start_reuses_that_prefix(served):
    runner, ids = served.runner, served.codec.encode(CODE[3])
    runner.prefill(0, ids, 0)
    again = runner.prefill(0, ids[3:], 3)  # the slot held more: cropped to 3 first
    assert runner.cached_length(0) == len(ids)
    torch.testing.assert_close(again, full_logits(served, ids)[-1], atol=ATOL, rtol=0)


def test_runner_sizes_come_from_the_tokenizer_and_config(served):
    runner = served.runner
    assert runner.vocab_size == served.codec.vocab_size  # the 3 padded rows dropped
    assert runner.context_length == 64 and runner.num_slots == 3


def test_runner_refuses_what_it_cannot_do(served):
    runner = served.runner
    with pytest.raises(GeexError, match="out of range"):
        runner.prefill(3, [1], 0)
    runner.prefill(1, [5, 6], 0)
    with pytest.raises(GeexError, match="holds 2 positions"):
        runner.prefill(1, [7], 4)
    with pytest.raises(GeexError, match="context"):
        runner.prefill(1, [1] * 65, 0)
    with pytest.raises(GeexError, match="at least one token"):
        runner.prefill(1, [], 0)


def test_codec_keeps_special_names_as_text_and_knows_its_end(served):
    codec = served.codec
    eos = codec.tokenizer.eos_token_id
    assert codec.eos_ids == {eos}
    assert eos not in codec.encode("x <|endoftext|> y")
    assert codec.decode(codec.encode(CODE[0])) == CODE[0]
    assert codec.leading_ids == ()


def test_codec_puts_the_tokenizers_bos_first(tmp_path):
    served = load_served_model(
        save_tiny_hf_model(tmp_path, bos=True), device="cpu", dtype="fp32", max_slots=1
    )
    bos = served.codec.tokenizer.bos_token_id
    assert served.codec.leading_ids == (bos,)
    ids = served.codec.encode("def f")
    assert ids[0] == bos and ids[1:] == served.codec.encode_text("def f")


def test_importing_the_serving_modules_does_not_import_transformers():
    import subprocess
    import sys

    probe = (
        "import sys, geex.serve.hf_runner, geex.serve.models, geex.tokenizer.fim; "
        "print('transformers' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def test_a_missing_transformers_is_one_error_naming_the_install(tmp_path, monkeypatch):
    import sys

    folder = save_tiny_hf_model(tmp_path)
    monkeypatch.setitem(sys.modules, "transformers", None)  # import now fails as if absent
    with pytest.raises(GeexError, match=r"pip install 'geex\[hf\]'"):
        load_served_model(folder, device="cpu")


def test_engine_over_the_hf_runner_decodes_what_transformers_generates(served):
    from geex.serve.engine import Engine, GenerationParams

    tokenizer, model = served.codec.tokenizer, served.runner.model
    ids = served.codec.encode(CODE[0][:12])
    with torch.inference_mode():
        out = model.generate(
            torch.tensor([ids]),
            attention_mask=torch.ones(1, len(ids), dtype=torch.long),
            do_sample=False,
            max_new_tokens=8,
            pad_token_id=tokenizer.eos_token_id,
        )[0, len(ids) :].tolist()
    if tokenizer.eos_token_id in out:
        out = out[: out.index(tokenizer.eos_token_id)]
    with Engine(served.runner, Unhealed(tokenizer), max_batch=2) as engine:
        [got] = engine.generate(ids, GenerationParams(max_tokens=8, temperature=0))
    assert out and got.text == served.codec.decode(out)


class Unhealed(HFCodec):
    """The codec without ``heal``: the engine decodes from the prompt's ids as they are."""

    heal = None


def test_the_engine_heals_as_the_hf_evaluation_backend_does(served):
    """Two implementations of the healing constraint (the engine's per-row mask, the eval
    backend's logits processor) give the same greedy text for prompts that end mid-token."""
    from geex.eval.backends import Sampling, StopRule
    from geex.eval.backends_hf import HFBackend
    from geex.serve.engine import Engine, GenerationParams

    prompts = [CODE[0][:12], CODE[0][:9], CODE[1][:15]]
    assert any(served.codec.heal(served.codec.encode(p)).tail for p in prompts)
    backend = HFBackend(served.runner.model, served.codec.tokenizer)
    no_stop = StopRule((), column_zero=False, closing_brace=False)
    want = backend.generate(prompts, [no_stop] * 3, Sampling(max_new_tokens=8))
    with Engine(served.runner, served.codec, max_batch=2) as engine:
        params = GenerationParams(max_tokens=8, temperature=0)
        got = [engine.generate(served.codec.encode(p), params)[0].text for p in prompts]
    assert got == [samples[0] for samples in want]


def test_codec_decodes_generated_ids_as_a_continuation(tmp_path):
    """A SentencePiece decoder drops the first token's space; a continuation keeps it."""
    from tests.serve.hf_model_folder import save_sentencepiece_style_model

    served = load_served_model(save_sentencepiece_style_model(tmp_path), device="cpu", max_slots=1)
    codec, text = served.codec, CODE[0]
    ids = codec.encode_text(text)
    assert codec.tokenizer.decode(ids[1:]) != codec.decode(ids[1:])  # the plain decoder's loss
    whole = codec.decode(ids)
    for k in range(1, len(ids)):
        assert codec.decode(ids[:k]) + codec.decode(ids[k:]) == whole
    assert whole.strip() == text.strip()


def test_slots_of_different_lengths_decode_in_one_forward_over_several_steps(served):
    runner = served.runner
    sequences = [
        served.codec.encode(text)[:n] for text, n in zip(CODE[:3], (5, 9, 12), strict=True)
    ]
    assert [len(s) for s in sequences] == [5, 9, 12]
    for slot, ids in enumerate(sequences):
        runner.prefill(slot, ids, 0)
    forwards = []
    hook = runner.model.register_forward_hook(lambda *_: forwards.append(1))
    for step in range(3):
        tokens = [(7 * step + slot) % 50 for slot in range(3)]
        forwards.clear()
        logits = runner.decode([0, 1, 2], tokens, [len(s) for s in sequences])
        assert len(forwards) == 1  # one forward for the three slots
        for slot, token in enumerate(tokens):
            sequences[slot] = [*sequences[slot], token]
            want = full_logits(served, sequences[slot])[-1]
            torch.testing.assert_close(logits[slot], want, atol=ATOL, rtol=0)
    hook.remove()
    assert [runner.cached_length(s) for s in range(3)] == [len(s) for s in sequences]


def test_a_sliding_window_cache_is_reused_only_where_it_can_be_cut_back(tmp_path):
    from geex.serve.engine import Engine, GenerationParams
    from geex.serve.hf_runner import HFRunner

    folder = save_tiny_hf_model(tmp_path, sliding_window=16)
    served = load_served_model(folder, device="cpu", dtype="fp32", max_slots=1)
    runner = served.runner
    first = list(range(3, 43))  # 40 tokens: past the window of 16
    second = first[:30] + list(range(250, 260))
    runner.prefill(0, first[:10], 0)
    assert runner.reusable_prefix(0, 5) == 5  # nothing has left the window yet
    runner.prefill(0, first[10:], 10)
    assert runner.reusable_prefix(0, 30) == 0 and runner.reusable_prefix(0, 40) == 40
    params = GenerationParams(max_tokens=4, temperature=0)
    with Engine(runner, served.codec) as engine:
        engine.generate(first, params)
        [again] = engine.generate(second, params)  # shares 30 tokens with the slot's cache
        assert engine.stats()["prefix_reused_tokens"] == 0
    with Engine(HFRunner(runner.model, num_slots=1), served.codec) as fresh:
        assert fresh.generate(second, params) == [again]


def test_a_full_attention_cache_is_reusable_up_to_any_length(served):
    runner, ids = served.runner, served.codec.encode(CODE[1])
    runner.prefill(2, ids, 0)
    assert [runner.reusable_prefix(2, n) for n in (0, 3, len(ids), len(ids) + 5)] == [
        0,
        3,
        len(ids),
        len(ids),
    ]
