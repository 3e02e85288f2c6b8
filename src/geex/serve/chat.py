"""Chat prompts: a list of messages rendered as the model expects its conversations.

A model tuned for chat ships a Jinja chat template (``chat_template`` in its
``tokenizer_config.json``); the prompt is that template rendered with
``add_generation_prompt=True``, so the text ends where the assistant's answer begins. Geex
renders it the way ``transformers`` does (:mod:`geex.tokenizer.chat_template`), so a template
behaves the same under both.

A base model has no template. It gets a plain transcript, the shape most pretraining text
with dialogue has::

    {system message, if any}

    User: {message}
    Assistant: {message}
    User: {message}
    Assistant:

and the answer ends at the next ``\\nUser:`` (:data:`PLAIN_CHAT_STOP`). A chat model's turn
ends at a token instead: any of :data:`CHAT_END_TOKENS` the vocabulary has, and end of text.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from geex.tokenizer.chat_template import ROLES as ROLES
from geex.tokenizer.chat_template import check_messages as check_messages
from geex.tokenizer.chat_template import render_chat_template as render_chat_template

# The tokens that close a turn: ChatML (Qwen, Geex), Llama 3, Gemma, Phi-3, DeepSeek-Coder's
# instruct models (<|EOT|>) and later DeepSeek models (end of sentence).
CHAT_END_TOKENS = (
    "<|im_end|>",
    "<|eot_id|>",
    "<end_of_turn>",
    "<|end|>",
    "<|EOT|>",
    "<｜end▁of▁sentence｜>",
)

PLAIN_CHAT_STOP = ("\nUser:",)


def plain_chat_prompt(messages: Sequence[Mapping[str, str]]) -> str:
    """The transcript a base model continues (see the module docstring)."""
    lines, turns = [], []
    for message in messages:
        if message["role"] == "system":
            lines.append(message["content"].strip() + "\n")
        else:
            speaker = "User" if message["role"] == "user" else "Assistant"
            turns.append(f"{speaker}: {message['content'].strip()}")
    return "\n".join([*lines, *turns, "Assistant:"])


def chat_end_ids(vocab: Mapping[str, int]) -> frozenset[int]:
    """The ids of the turn-ending tokens ``vocab`` has."""
    return frozenset(vocab[t] for t in CHAT_END_TOKENS if t in vocab)
