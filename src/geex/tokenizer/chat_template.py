"""Chat templates: how a conversation becomes the text a model reads, saved with its tokenizer.

A template is Jinja, stored as ``chat_template`` in ``tokenizer_config.json`` as Hugging Face
does, so ``geex serve`` and ``transformers``' ``apply_chat_template`` render a fine-tuned
model's conversations as it was trained on them. It is rendered here the way ``transformers``
renders it (a sandboxed, immutable Jinja environment with ``trim_blocks`` and
``lstrip_blocks``, ``raise_exception`` and a ``tojson`` filter), so a template behaves the
same under both.

:data:`GEEX_CHAT_TEMPLATE` is the template ``geex train --sft`` trains with: the ``User:`` /
``Assistant:`` transcript a base model is served with, each answer closed by the
end-of-document token, so that any Geex tokenizer (CodeGeeX-13B's included) has the token
that ends a turn and generation stops on it::

    {system message, if any}

    User: {message}
    Assistant: {answer}<|endoftext|>
    User: {message}
    Assistant: {answer}<|endoftext|>

and, as a prompt (``add_generation_prompt``), it ends with ``Assistant: ``.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence

from geex.errors import GeexError

ROLES = ("system", "user", "assistant")

# Newlines are written as expressions ('\n'): Jinja's trim_blocks would eat a literal newline
# after a block tag, and the template must render byte for byte as documented above.
GEEX_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}"
    "{{ message['content'] + '\\n\\n' }}"
    "{% elif message['role'] == 'user' %}"
    "{{ 'User: ' + message['content'] + '\\n' }}"
    "{% elif message['role'] == 'assistant' %}"
    "{{ 'Assistant: ' + message['content'] + eos_token + '\\n' }}"
    "{% else %}"
    "{{ raise_exception('unknown role ' + message['role']) }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ 'Assistant: ' }}{% endif %}"
)


def render_chat_template(
    template: str,
    messages: Sequence[Mapping[str, str]],
    special_tokens: Mapping[str, str | None],
    *,
    add_generation_prompt: bool = True,
) -> str:
    """``template`` rendered for ``messages``, as ``transformers``' ``apply_chat_template``.

    ``special_tokens``: ``bos_token``, ``eos_token``... as the template refers to them. A
    template error (a bad template, or one that refuses the conversation through
    ``raise_exception``) is a GeexError with the template's own message.
    """
    import jinja2

    try:
        return _compiled(template).render(
            messages=list(messages),
            add_generation_prompt=add_generation_prompt,
            **{k: v for k, v in special_tokens.items() if v is not None},
        )
    except jinja2.exceptions.TemplateError as err:
        raise GeexError(f"the chat template cannot render these messages: {err}") from None


@functools.lru_cache(maxsize=8)
def _compiled(template: str):
    """The template compiled once: fine-tuning data renders it several times per conversation."""
    import jinja2
    from jinja2.ext import loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(value, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(
            value, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
            sort_keys=sort_keys,
        )  # fmt: skip

    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols]
    )
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    try:
        return env.from_string(template)
    except jinja2.exceptions.TemplateError as err:
        raise GeexError(f"the chat template cannot render these messages: {err}") from None


def check_messages(messages: object) -> list[dict[str, str]]:
    """``messages`` as a list of ``{"role", "content"}`` with known roles and text content: what
    a chat prompt is rendered from, when serving and when fine-tuning."""
    if not isinstance(messages, Sequence) or isinstance(messages, str) or not messages:
        raise GeexError("`messages` must be a non-empty list of {role, content} objects")
    checked = []
    for i, message in enumerate(messages):
        if not isinstance(message, Mapping):
            raise GeexError(f"messages[{i}] is not an object with a role and a content")
        role, content = message.get("role"), message.get("content")
        if role not in ROLES:
            raise GeexError(f"messages[{i}].role is {role!r}; expected one of {', '.join(ROLES)}")
        if not isinstance(content, str):
            raise GeexError(f"messages[{i}].content must be text, got {type(content).__name__}")
        checked.append({"role": role, "content": content})
    return checked
