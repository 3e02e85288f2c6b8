"""Fine-tuning samples: the template's rendering, answer tokens found exactly, packing that
leaves each conversation's logits as they are alone. `pytest tests/train/test_sft_samples.py`."""

from __future__ import annotations

import pytest
import torch

from geex.errors import GeexError
from geex.model.checkpoint import load_model
from geex.model.loss import IGNORE_INDEX
from geex.tokenizer import load_tokenizer
from geex.tokenizer.chat_template import GEEX_CHAT_TEMPLATE, render_chat_template
from geex.train.conversations import Conversation
from geex.train.sft_samples import SftSamples, encode_conversation, fine_tuning_tokenizer

TWO_TURNS = [
    {"role": "system", "content": "Answer with code."},
    {"role": "user", "content": "Add a and b."},
    {"role": "assistant", "content": "def add(a, b):\n    return a + b"},
    {"role": "user", "content": "And in C?"},
    {"role": "assistant", "content": "int add(int a, int b) { return a + b; }"},
    {"role": "user", "content": "Thanks."},  # after the last answer: nothing to learn from
]


def test_the_template_renders_the_documented_transcript():
    special = {"eos_token": "<|endoftext|>"}
    assert render_chat_template(GEEX_CHAT_TEMPLATE, TWO_TURNS[:3], special) == (
        "Answer with code.\n\nUser: Add a and b.\n"
        "Assistant: def add(a, b):\n    return a + b<|endoftext|>\nAssistant: "
    )
    with pytest.raises(GeexError, match="unknown role tool"):
        render_chat_template(GEEX_CHAT_TEMPLATE, [{"role": "tool", "content": "x"}], special)


def test_trained_tokens_are_exactly_each_answer_and_its_end_of_turn(chat_base_model):
    tokenizer = fine_tuning_tokenizer(chat_base_model)
    ids, trained = encode_conversation(TWO_TURNS, tokenizer, GEEX_CHAT_TEMPLATE)
    eod = tokenizer.eod_id
    answers = [m["content"] for m in TWO_TURNS if m["role"] == "assistant"]
    assert [i for i, t in zip(ids, trained, strict=True) if t] == [
        *tokenizer.encode(answers[0]), eod, *tokenizer.encode(answers[1]), eod,
    ]  # fmt: skip
    # The rest is the rendered context, up to the last answer's end of turn.
    rendered = render_chat_template(
        GEEX_CHAT_TEMPLATE, TWO_TURNS[:5], {"eos_token": tokenizer.eod_token},
        add_generation_prompt=False,
    )  # fmt: skip
    assert tokenizer.decode(ids) == rendered.removesuffix("\n")
    # What precedes each answer is what the server sends as the prompt for it.
    first_answer = trained.index(True)
    prompt = render_chat_template(
        GEEX_CHAT_TEMPLATE, TWO_TURNS[:2], {"eos_token": tokenizer.eod_token}
    )
    assert ids[:first_answer] == tokenizer.encode(prompt, allow_special=True)


def conversation(user: str, answer: str) -> Conversation:
    messages = [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]
    return Conversation(messages, where=user)


def test_a_packed_conversation_has_its_logits_alone(chat_base_model):
    tokenizer = fine_tuning_tokenizer(chat_base_model)
    model = load_model(chat_base_model).eval()
    talks = [conversation(f"Question {i}?", "a = " + "1" * i) for i in range(1, 7)]
    samples = SftSamples(talks, tokenizer, GEEX_CHAT_TEMPLATE, seq_len=63, seed=0)
    assert samples.num_samples < len(talks)  # several conversations share a sequence
    batch = samples.batch(0, samples.num_samples)
    with torch.no_grad():
        packed = model(batch.inputs, batch.position_ids, attn_mask=batch.attn_mask)
    checked = 0
    for row in range(samples.num_samples):
        documents = batch.documents[row]
        for number in set(documents.tolist()) - {-1}:
            where = documents == number
            alone_ids = batch.inputs[row][where][None]
            with torch.no_grad():
                alone = model(alone_ids)
            torch.testing.assert_close(packed[row][where], alone[0], rtol=0, atol=1e-5)
            checked += 1
    assert checked == len(talks)
    # Targets: the answer tokens of each conversation, nothing across or in the padding.
    expected = sum(sum(encode_conversation(t.messages, tokenizer, GEEX_CHAT_TEMPLATE)[1])
                   for t in talks)  # fmt: skip
    assert int((batch.targets != IGNORE_INDEX).sum()) == expected
    assert samples.trained_targets(0, samples.num_samples) == expected


def test_sample_order_depends_on_the_seed_and_counter_only(chat_base_model):
    tokenizer = fine_tuning_tokenizer(chat_base_model)
    talks = [conversation(f"Question {i}?", "x" * (10 + i)) for i in range(10)]
    first = SftSamples(talks, tokenizer, GEEX_CHAT_TEMPLATE, seq_len=63, seed=3)
    again = SftSamples(talks, tokenizer, GEEX_CHAT_TEMPLATE, seq_len=63, seed=3)
    many = first.batch(0, 3 * first.num_samples)  # three epochs, each in its own order
    for start in (0, 2, first.num_samples + 1):
        assert torch.equal(again.batch(start, 2).inputs, many.inputs[start : start + 2])


def test_a_conversation_longer_than_a_sequence_is_refused_by_name(chat_base_model):
    tokenizer = fine_tuning_tokenizer(chat_base_model)
    talks = [conversation("short?", "yes"), conversation("long?", "word " * 80)]
    with pytest.raises(GeexError, match=r"long\?: \d+ tokens, more than a sequence of --seq-len"):
        SftSamples(talks, tokenizer, GEEX_CHAT_TEMPLATE, seq_len=63, seed=0)


def test_the_template_is_saved_with_the_tokenizer(chat_base_model, tmp_path):
    tokenizer = fine_tuning_tokenizer(chat_base_model)
    assert load_tokenizer(chat_base_model).chat_template is None  # a base model has none
    tokenizer.save(tmp_path)
    assert load_tokenizer(tmp_path).chat_template == GEEX_CHAT_TEMPLATE
    transformers = pytest.importorskip("transformers")
    hf = transformers.PreTrainedTokenizerFast.from_pretrained(tmp_path)
    rendered = hf.apply_chat_template(TWO_TURNS[:2], tokenize=False, add_generation_prompt=True)
    assert rendered == render_chat_template(
        GEEX_CHAT_TEMPLATE, TWO_TURNS[:2], {"eos_token": tokenizer.eod_token}
    )


def test_a_template_that_does_not_close_answers_is_refused_naming_the_row(chat_base_model):
    tokenizer = fine_tuning_tokenizer(chat_base_model)
    bare = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    with pytest.raises(GeexError, match="Hi[?]: the chat template does not close an answer"):
        SftSamples([conversation("Hi?", "yes")], tokenizer, bare, seq_len=63, seed=0)
