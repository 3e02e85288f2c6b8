"""Chat prompts: a model's own template rendered as transformers renders it (for HF and Geex
tokenizers alike), a plain transcript for base models, turn-ending tokens as stop ids.

Run: pytest tests/serve/test_chat.py -q
"""

from __future__ import annotations

import json

import pytest

from geex.errors import GeexError
from geex.serve.chat import (
    PLAIN_CHAT_STOP,
    chat_end_ids,
    check_messages,
    plain_chat_prompt,
    render_chat_template,
)
from geex.serve.models import GeexPromptTokens, load_served_model, saved_chat_template
from tests.serve.hf_model_folder import CHATML, save_tiny_hf_model

MESSAGES = [
    {"role": "system", "content": "You write Python."},
    {"role": "user", "content": "Add two numbers."},
    {"role": "assistant", "content": "def add(a, b): return a + b"},
    {"role": "user", "content": "Now three."},
]


def test_template_renders_with_the_generation_prompt():
    text = render_chat_template(CHATML, MESSAGES[1:2], {})
    assert text == "<|im_start|>user\nAdd two numbers.<|im_end|>\n<|im_start|>assistant\n"


def test_template_sees_special_tokens_and_tojson():
    template = "{{ bos_token }}{{ messages | tojson }}{% if add_generation_prompt %}>{% endif %}"
    text = render_chat_template(template, MESSAGES[1:2], {"bos_token": "<s>", "eos_token": None})
    assert text == '<s>[{"role": "user", "content": "Add two numbers."}]>'


def test_a_template_that_refuses_is_one_clear_error():
    template = "{{ raise_exception('Conversation roles must alternate') }}"
    with pytest.raises(GeexError, match="roles must alternate"):
        render_chat_template(template, MESSAGES, {})
    with pytest.raises(GeexError, match="cannot render"):
        render_chat_template("{% for %}", MESSAGES, {})


def test_the_sandbox_refuses_python_internals():
    with pytest.raises(GeexError):
        render_chat_template("{{ messages.__class__.__mro__ }}", MESSAGES, {})


def test_plain_transcript_for_a_base_model():
    assert plain_chat_prompt(MESSAGES) == (
        "You write Python.\n\n"
        "User: Add two numbers.\n"
        "Assistant: def add(a, b): return a + b\n"
        "User: Now three.\n"
        "Assistant:"
    )
    assert PLAIN_CHAT_STOP == ("\nUser:",)


@pytest.mark.parametrize(
    ("messages", "error"),
    [
        ([], "non-empty list"),
        ("hello", "non-empty list"),
        ([{"role": "robot", "content": "x"}], "role is 'robot'"),
        ([{"role": "user", "content": 3}], "must be text"),
        (["hi"], "not an object"),
    ],
)
def test_bad_messages_are_refused(messages, error):
    with pytest.raises(GeexError, match=error):
        check_messages(messages)


def test_turn_end_tokens_become_stop_ids():
    vocab = {"<|im_end|>": 7, "<end_of_turn>": 9, "x": 1}
    assert chat_end_ids(vocab) == {7, 9}


def test_hf_model_with_a_template_matches_apply_chat_template(tmp_path):
    folder = save_tiny_hf_model(
        tmp_path, special_tokens=["<|im_start|>", "<|im_end|>"], chat_template=CHATML
    )
    served = load_served_model(folder, device="cpu", dtype="fp32", max_slots=1)
    assert served.chat_template == CHATML and served.chat_stop == ()
    tokenizer = served.codec.tokenizer
    expected = tokenizer(
        tokenizer.apply_chat_template(MESSAGES, add_generation_prompt=True, tokenize=False),
        add_special_tokens=False,
    )["input_ids"]
    ids = served.chat_prompt_ids(MESSAGES)
    assert ids == expected
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert im_end in ids and im_end in served.stop_token_ids


def test_hf_model_without_a_template_gets_the_transcript(tmp_path):
    served = load_served_model(save_tiny_hf_model(tmp_path), device="cpu", max_slots=1)
    assert served.chat_template is None and served.chat_stop == PLAIN_CHAT_STOP
    ids = served.chat_prompt_ids(MESSAGES)
    assert served.codec.decode(ids) == plain_chat_prompt(MESSAGES)


def test_geex_tokenizer_renders_its_saved_template(tmp_path):
    from geex.tokenizer import train_tokenizer

    tokenizer = train_tokenizer(["def add(a, b):\n    return a + b\n"] * 20, vocab_size=400)
    tokenizer.save(tmp_path)
    config_file = tmp_path / "tokenizer_config.json"
    config = json.loads(config_file.read_text())
    template = "{% for m in messages %}{{ m['content'] }}<|fim_pad|>{% endfor %}"
    config["chat_template"] = template
    config_file.write_text(json.dumps(config))
    assert saved_chat_template(tmp_path) == template

    tokens = GeexPromptTokens(tokenizer)
    text = tokens.render_chat(template, MESSAGES[1:2])
    assert text == "Add two numbers.<|fim_pad|>"
    ids = tokens.encode_rendered(text)
    assert ids[-1] == tokenizer.fim_pad_id  # the template's special names are tokens
    assert tokenizer.fim_pad_id not in tokens.encode_text(text)  # plain text keeps them text


def test_no_saved_template_is_none(tmp_path):
    assert saved_chat_template(tmp_path) is None
    (tmp_path / "chat_template.jinja").write_text("{{ messages }}")
    assert saved_chat_template(tmp_path) == "{{ messages }}"
