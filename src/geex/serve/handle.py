"""A request's side of the engine: text as it is decoded, how the sequence ended, a way to stop it.

The engine decodes on its own thread; a server reads on its asyncio event loop. A
:class:`RequestHandle` is the bridge: the engine's thread feeds it (``emit``, ``finish``),
and it hands each piece to the loop it was made on with ``call_soon_threadsafe``, so that a
reader awaits pieces without polling and the engine never blocks on a slow client. A handle
made off any event loop (a script, the evaluation harness) is read with :meth:`wait`.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator

from geex.errors import GeexError
from geex.serve.completion import Completion

__all__ = ["RequestHandle"]

_END = object()


class RequestHandle:
    """One sequence being generated: its text as it comes, how it ended, a way to stop it.

    Made on the event loop's thread, it streams to that loop (``stream``, ``result``); made on
    any other thread, ``wait`` blocks for the result. The engine's thread feeds it.
    """

    def __init__(self, prompt_tokens: int) -> None:
        self.prompt_tokens = prompt_tokens
        self._cancelled = threading.Event()
        self._done = threading.Event()
        self._finishing = threading.Lock()
        self._completion: Completion | None = None
        self._error: BaseException | None = None
        try:
            self._loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            self._loop = None
        self._pieces: asyncio.Queue | None = asyncio.Queue() if self._loop else None
        self._finished: asyncio.Event | None = asyncio.Event() if self._loop else None

    # --- read by the client -------------------------------------------------------------

    async def stream(self) -> AsyncIterator[str]:
        """Text pieces as they are decoded; never text that a stop rule cuts later.

        A reader that stops early (its task cancelled when the client disconnects, or the
        iterator closed) cancels the sequence, so that its slot is not spent on nobody."""
        if self._pieces is None:
            raise GeexError("stream() needs a handle submitted from an event loop; use wait()")
        try:
            while (piece := await self._pieces.get()) is not _END:
                yield piece
        finally:
            if not self.done:
                self.cancel()

    async def result(self) -> Completion:
        if self._finished is None:
            raise GeexError("result() needs a handle submitted from an event loop; use wait()")
        await self._finished.wait()
        return self._outcome()

    def wait(self, timeout: float | None = None) -> Completion:
        if not self._done.wait(timeout):
            raise TimeoutError(f"no result within {timeout} s")
        return self._outcome()

    def cancel(self) -> None:
        """Stop decoding at the next step; the result's finish reason is "cancelled"."""
        self._cancelled.set()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def _outcome(self) -> Completion:
        if self._error is not None:
            raise self._error
        assert self._completion is not None
        return self._completion

    # --- called by the engine's thread only ---------------------------------------------

    def emit(self, text: str) -> None:
        if text and self._pieces is not None:
            self._call_on_loop(self._pieces.put_nowait, text)

    def finish(self, completion: Completion | None, error: BaseException | None = None) -> None:
        """End the handle; it ends once, so a later call (an engine step that failed after
        finishing some of its sequences, say) changes nothing."""
        with self._finishing:
            if self._done.is_set():
                return
            self._completion, self._error = completion, error
            self._done.set()
        if self._pieces is not None and self._finished is not None:
            self._call_on_loop(self._pieces.put_nowait, _END)
            self._call_on_loop(self._finished.set)

    def _call_on_loop(self, function, *args) -> None:
        # A closed loop raises RuntimeError: nobody is listening any more.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(function, *args)
