"""The bounds of :class:`~geex.serve.state.ServeLimits` applied to a request.

Each check raises :class:`LimitExceeded`, which names the limit and the ``geex serve`` flag that
sets it, so that whoever runs into a bound knows it is the server's choice and how to move it.
The exception is protocol-neutral: each protocol answers it in its own error shape.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Iterator
from typing import TYPE_CHECKING

from starlette.responses import StreamingResponse

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


def allowed_max_tokens(limits: ServeLimits, asked: int | None, *, cap: bool) -> int:
    """The token bound a request runs with: ``asked``, or the server's limit if it asks none.

    Over the limit the protocols differ, deliberately. OpenAI's routes and the tasks refuse
    (``cap=False``: a 400 naming ``geex serve --max-tokens``): their callers ask for a bound
    and should learn that it is not the one they get. The editor protocols (Tabby, Ollama,
    llama.cpp) cap (``cap=True``): editors send "as many as you like" values (Ollama's
    ``num_predict`` -1, llama.cpp's ``n_predict`` -1, a plugin's large default) and cannot be
    told to change them, and a completion shorter than asked is what their users get anyway.
    A value of zero or less asks for none (the editors' -1)."""
    if asked is None or (asked <= 0 and cap):
        return limits.max_tokens
    if asked > limits.max_tokens and cap:
        return limits.max_tokens
    check_max_tokens(limits, asked)
    return asked


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


def prompt_room(state: ServerState, max_tokens: int) -> int:
    """Prompt tokens a prompt that may be cut (an editor's file, an infill) is cut to, leaving
    ``max_tokens`` of the context to generate in, but never less than half the prompt budget.

    Cutting to the whole budget (the context less one) would leave room for ONE generated
    token: a long file would always end "length" after a single token. Half the budget is the
    floor because a huge ``max_tokens`` (editors send "as many as you like") must not cut the
    code the completion depends on to nothing; such a request stops at the context instead.
    """
    budget = state.prompt_budget()
    context = state.model.context_length
    return min(budget, max(context - max_tokens, budget // 2))


class StreamSlots:
    """How many streaming responses are open, of every protocol; one more than ``limit`` is a
    429 (each protocol answers :class:`LimitExceeded` in its own shape).

    Counted on the event loop's thread only (acquired in a route, released when its
    :class:`CountedStream` ends), so a plain integer suffices.
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

    @contextlib.contextmanager
    def held(self, stream: bool = True) -> Iterator[None]:
        """Acquire a slot for a streaming request (none for another), and give it back if the
        block fails before its :class:`CountedStream` takes it over."""
        if not stream:
            yield
            return
        self.acquire()
        try:
            yield
        except BaseException:
            self.release()
            raise


class CountedStream(StreamingResponse):
    """A streaming response that holds a slot of ``slots`` (acquired by the route) until it
    ends, however it ends: finished, the client gone (Starlette cancels the body), or never
    started; then it runs ``on_close`` (which cancels the generation it was reading)."""

    def __init__(
        self,
        body: AsyncIterator[str],
        slots: StreamSlots,
        *,
        media_type: str,
        on_close: Callable[[], None] = lambda: None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(body, media_type=media_type, headers=headers)
        self._slots, self._on_close, self._closed = slots, on_close, False

    async def __call__(self, scope, receive, send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.close()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            try:
                self._on_close()
            finally:
                self._slots.release()
