"""The serving engine: requests in, text out, one model shared by every protocol.

Every endpoint (OpenAI, Tabby, Ollama, llama.cpp, the tasks) tokenizes its request, then hands
the prompt ids to :meth:`Engine.submit` and reads the text back from the returned
:class:`RequestHandle` objects, one per sample. The engine owns the model: it runs in one
background thread, so the event loop never waits for a forward pass and ``/health`` answers at
once under any load.

The model is reached through two small protocols, so that a Geex checkpoint and a Hugging Face
model are served by the same engine:

- :class:`TextCodec`: ids <-> text and the ids that end a sequence;
- :class:`Runner`: a KV cache in numbered slots, filled by ``prefill`` and extended one token
  per slot by ``decode``.

This version decodes one sequence at a time, in submission order.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import threading
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import torch

from geex.errors import GeexError
from geex.languages import Language
from geex.model.generation import sample_next
from geex.model.sampling import SamplingConfig, check_sampling
from geex.serve.completion import Completion, _held_back, completion_end

__all__ = [
    "Completion",
    "Engine",
    "EngineBusy",
    "GenerationParams",
    "RequestHandle",
    "Runner",
    "TextCodec",
]


@dataclass(frozen=True)
class GenerationParams:
    """How one sequence is decoded and where its text ends."""

    max_tokens: int = 16
    temperature: float = 1.0  # 0 is greedy
    top_p: float = 1.0
    top_k: int = 0
    seed: int | None = None
    stop: tuple[str, ...] = ()  # the text ends before the first of these
    language: Language | None = None  # adds the language's stop rules
    stop_token_ids: frozenset[int] = frozenset()  # besides the codec's end ids

    def __post_init__(self) -> None:
        check_sampling(
            temperature=self.temperature,
            top_p=self.top_p,
            max_new_tokens=self.max_tokens,
            num_samples=1,
            top_k=self.top_k,
            seed=self.seed,
            name=lambda f: {"max_new_tokens": "max_tokens"}.get(f, f),
        )

    def sampling(self, max_tokens: int, sample: int = 0) -> SamplingConfig:
        """The sampler's settings; sample ``i`` of a seeded request draws from ``seed + i``."""
        seed = None if self.seed is None else self.seed + sample
        return SamplingConfig(
            max_new_tokens=max_tokens,
            temperature=self.temperature,
            top_p=self.top_p,
            top_k=self.top_k,
            seed=seed,
        )

    def stop_sequences(self) -> list[str]:
        return [*self.stop, *(self.language.stop_sequences if self.language else ())]


class EngineBusy(GeexError):
    """The queue is full: the client should retry after ``retry_after`` seconds (HTTP 429)."""

    def __init__(self, message: str, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class TextCodec(Protocol):
    """What the engine needs of a tokenizer."""

    vocab_size: int
    eos_ids: frozenset[int]

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: Sequence[int]) -> str: ...


class Runner(Protocol):
    """What the engine needs of a model: a KV cache in numbered slots."""

    context_length: int  # positions one sequence may use, prompt and generated
    vocab_size: int  # logits columns kept
    num_slots: int

    def prefill(self, slot: int, token_ids: Sequence[int], start: int) -> torch.Tensor:
        """Cache positions ``start .. start + len(token_ids) - 1`` of ``slot`` (those before
        ``start`` are kept: a reused prefix); float32 logits ``(vocab_size,)`` of the last."""
        ...

    def decode(
        self, slots: Sequence[int], token_ids: Sequence[int], positions: Sequence[int]
    ) -> torch.Tensor:
        """One new token per slot at its position; float32 logits ``(len(slots), vocab_size)``."""
        ...

    def copy_slot(self, source: int, target: int, length: int) -> None:
        """The first ``length`` cached positions of ``source`` into ``target``."""
        ...


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
        """Text pieces as they are decoded; never text that a stop rule cuts later."""
        if self._pieces is None:
            raise GeexError("stream() needs a handle submitted from an event loop; use wait()")
        while (piece := await self._pieces.get()) is not _END:
            yield piece

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

    # --- fed by the engine --------------------------------------------------------------

    def _emit(self, text: str) -> None:
        if text and self._pieces is not None:
            self._call_on_loop(self._pieces.put_nowait, text)

    def _finish(self, completion: Completion | None, error: BaseException | None = None) -> None:
        self._completion, self._error = completion, error
        self._done.set()
        if self._pieces is not None and self._finished is not None:
            self._call_on_loop(self._pieces.put_nowait, _END)
            self._call_on_loop(self._finished.set)

    def _call_on_loop(self, function, *args) -> None:
        # A closed loop raises RuntimeError: nobody is listening any more.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(function, *args)


@dataclass
class _Job:
    prompt_ids: list[int]
    params: GenerationParams
    handles: list[RequestHandle]
    document: str | None = None


@dataclass
class _TextState:
    """A sequence's tokens and how much of their text has been handed out."""

    ids: list[int] = field(default_factory=list)
    emitted: int = 0


class Engine:
    """Decodes submitted prompts on a background thread."""

    def __init__(
        self, runner: Runner, codec: TextCodec, *, max_batch: int = 16, max_queue: int = 64
    ) -> None:
        if max_batch < 1 or max_queue < 1:
            raise GeexError("max_batch and max_queue must be at least 1")
        self.runner, self.codec = runner, codec
        self.max_batch, self.max_queue = max_batch, max_queue
        self._jobs: collections.deque[_Job] = collections.deque()
        self._documents: dict[str, list[RequestHandle]] = {}
        self._running = 0
        self._closed = False
        self._wake = threading.Condition()
        self._thread = threading.Thread(target=self._loop, name="geex-engine", daemon=True)
        self._thread.start()

    # --- the client's side --------------------------------------------------------------

    def submit(
        self,
        prompt_ids: Sequence[int],
        params: GenerationParams,
        *,
        n: int = 1,
        document: str | None = None,
    ) -> list[RequestHandle]:
        """Queue ``n`` samples of one prompt; see the module docstring."""
        ids = [int(i) for i in prompt_ids]
        if not ids:
            raise GeexError("the prompt is empty: at least one token is needed")
        context = self.runner.context_length
        if len(ids) >= context:
            raise GeexError(
                f"the prompt has {len(ids)} tokens; the model's context is {context} tokens, "
                "and at least one must be left to generate"
            )
        if n < 1:
            raise GeexError(f"n must be at least 1, got {n}")
        handles = [RequestHandle(len(ids)) for _ in range(n)]
        with self._wake:
            if self._closed:
                raise GeexError("the engine has stopped")
            if len(self._jobs) >= self.max_queue:
                raise EngineBusy(
                    f"the server is busy: {len(self._jobs)} requests are waiting already",
                    retry_after=1,
                )
            if document is not None:
                for earlier in self._documents.get(document, []):
                    earlier.cancel()
                self._documents[document] = handles
            self._jobs.append(_Job(ids, params, handles, document))
            self._wake.notify()
        return handles

    def generate(
        self, prompt_ids: Sequence[int], params: GenerationParams, *, n: int = 1
    ) -> list[Completion]:
        """Submit and wait: the completions of ``n`` samples, for callers off the event loop."""
        return [handle.wait() for handle in self.submit(prompt_ids, params, n=n)]

    def stats(self) -> dict:
        with self._wake:
            return {
                "running": self._running,
                "queued": sum(len(job.handles) for job in self._jobs),
                "slots": self.runner.num_slots,
                "max_batch": self.max_batch,
                "max_queue": self.max_queue,
            }

    def close(self) -> None:
        """Stop the thread; queued requests end as cancelled."""
        with self._wake:
            self._closed = True
            self._wake.notify()
        self._thread.join(timeout=60)
        for job in self._jobs:
            for handle in job.handles:
                handle._finish(Completion("", 0, "cancelled"))
        self._jobs.clear()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- the engine's thread ------------------------------------------------------------

    def _loop(self) -> None:
        while True:
            with self._wake:
                while not self._jobs and not self._closed:
                    self._wake.wait()
                if self._closed:
                    return
                job = self._jobs.popleft()
                self._running = len(job.handles)
            for sample, handle in enumerate(job.handles):
                try:
                    handle._finish(self._decode(job, handle, sample))
                except Exception as err:  # the engine survives; the client gets the error
                    handle._finish(None, err)
            with self._wake:
                self._running = 0
                if job.document is not None and self._documents.get(job.document) is job.handles:
                    del self._documents[job.document]

    @torch.inference_mode()
    def _decode(self, job: _Job, handle: RequestHandle, sample: int) -> Completion:
        if handle.cancelled:
            return Completion("", 0, "cancelled")
        runner, params = self.runner, job.params
        max_new = min(params.max_tokens, runner.context_length - len(job.prompt_ids))
        sampling = params.sampling(max_new, sample)
        generator = None
        if sampling.seed is not None:
            generator = torch.Generator().manual_seed(sampling.seed)
        stop = params.stop_sequences()
        end_ids = self.codec.eos_ids | params.stop_token_ids
        state = _TextState()
        logits = runner.prefill(0, job.prompt_ids, 0)
        position = len(job.prompt_ids)
        reason = "length"
        for _ in range(max_new):
            if handle.cancelled:
                return Completion(self._text(state), len(state.ids), "cancelled")
            token = int(sample_next(logits[None].float(), sampling, generator)[0])
            if token in end_ids:
                reason = "eos"
                break
            state.ids.append(token)
            if self._advance_text(state, handle, stop, params.language):
                reason = "stop"
                break
            if len(state.ids) == max_new:
                break
            logits = runner.decode([0], [token], [position])[0]
            position += 1
        text = self._text(state)
        end = completion_end(text, stop, params.language)
        final = text[:end] if end is not None else text
        handle._emit(final[state.emitted :])
        return Completion(final, len(state.ids), reason)

    def _text(self, state: _TextState) -> str:
        return self.codec.decode(state.ids)

    def _advance_text(
        self, state: _TextState, handle: RequestHandle, stop: list[str], language
    ) -> bool:
        """Hand out the text that no stop rule can still cut; True once one has fired."""
        text = self._text(state)
        end = completion_end(text, stop, language)
        upto = end if end is not None else len(text) - _held_back(text, stop)
        if upto > state.emitted:
            handle._emit(text[state.emitted : upto])
            state.emitted = upto
        return end is not None
