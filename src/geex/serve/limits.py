"""The bounds of :class:`~geex.serve.state.ServeLimits` applied to a request.

Each check raises :class:`LimitExceeded`, which names the limit and the ``geex serve`` flag that
sets it, so that whoever runs into a bound knows it is the server's choice and how to move it.
The exception is protocol-neutral: each protocol answers it in its own error shape.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from geex.errors import GeexError

if TYPE_CHECKING:
    from geex.serve.state import ServeLimits, ServerState


class LimitExceeded(GeexError):
    """A request over one of the server's limits: a 4xx (429 for a busy server)."""

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        status: int = 400,
        code: str | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message)
        self.param, self.status, self.code, self.retry_after = param, status, code, retry_after


def check_max_tokens(limits: ServeLimits, max_tokens: int) -> None:
    if max_tokens > limits.max_tokens:
        raise LimitExceeded(
            f"max_tokens {max_tokens} is over this server's limit of {limits.max_tokens} "
            "tokens per completion (geex serve --max-tokens)",
            param="max_tokens",
        )


def check_samples(limits: ServeLimits, n: int, prompts: int = 1) -> None:
    """``prompts x n`` completions in one request: each is a sequence the engine decodes."""
    if n * prompts > limits.max_n:
        asked = f"n={n}" if prompts == 1 else f"{prompts} prompts x n={n} = {n * prompts}"
        raise LimitExceeded(
            f"{asked} completions is over this server's limit of {limits.max_n} per request "
            "(geex serve --max-n)",
            param="n",
        )


def check_prompt_tokens(state: ServerState, count: int, param: str = "prompt") -> None:
    """A prompt that cannot be cut (a plain completion, a chat) must fit the prompt budget."""
    budget = state.prompt_budget()
    if count <= budget:
        return
    context = state.model.context_length
    if budget < context - 1:
        reason = f"this server's limit is {budget} prompt tokens (geex serve --max-prompt-tokens)"
    else:
        reason = (
            f"the model's context is {context} tokens, and at least one must be left to generate"
        )
    raise LimitExceeded(
        f"the prompt has {count} tokens; {reason}", param=param, code="context_length_exceeded"
    )


class StreamSlots:
    """How many streaming responses are open; one more than ``limit`` is a 429.

    Counted on the event loop's thread only (acquired in a route, released when the response
    ends), so a plain integer suffices.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.open = 0

    def acquire(self) -> None:
        if self.open >= self.limit:
            raise LimitExceeded(
                f"{self.open} streams are open, this server's limit (geex serve --max-streams); "
                "retry shortly",
                param="stream",
                status=429,
                code="rate_limit_exceeded",
                retry_after=1,
            )
        self.open += 1

    def release(self) -> None:
        self.open = max(0, self.open - 1)
