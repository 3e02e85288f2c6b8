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

Requests are decoded together: sequences join the running batch when a slot frees and leave
it the step they end (continuous batching, as in vLLM and llama.cpp's server). A slot keeps
what it cached after its sequence ends, so the next prompt that starts the same way (the same
file, a few keystrokes later) prefills only what is new. Text is detokenized and cut by stop
rules incrementally (:mod:`geex.serve.text_stream`).

A codec that can (``heal``) heals each prompt (:mod:`geex.tokenizer.healing`): an editor's
cursor after a line break ends the prompt on a token that training text rarely ends with, so
the prompt's last pre-token is backed up and every sample spells it again first, under a
constraint, before its own text starts.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import torch

from geex.errors import GeexError
from geex.languages import Language
from geex.model.generation import only_allowed, penalize_repeats, sample_next
from geex.model.sampling import (
    GREEDY_BELOW,
    MAX_SEED,
    REPETITION_WINDOW,
    SamplingConfig,
    check_sampling,
)
from geex.serve.completion import Completion
from geex.serve.handle import RequestHandle
from geex.serve.serve_limits import MAX_STOP_CHARS, MAX_STOP_SEQUENCES
from geex.serve.text_stream import TextStream
from geex.tokenizer.healing import HealedPrompt

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
    temperature: float = 1.0  # 0 (or below GREEDY_BELOW) is greedy
    top_p: float = 1.0
    top_k: int = 0
    seed: int | None = None
    repetition_penalty: float = 1.0  # 1: off (generation.penalize_repeats)
    repetition_window: int = REPETITION_WINDOW  # tokens back, prompt included
    stop: tuple[str, ...] = ()  # the client's: the text ends before the first of these
    # The server's own (a chat transcript's next turn, a task's end): not the client's to
    # count against its limit.
    server_stop: tuple[str, ...] = ()
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
            repetition_penalty=self.repetition_penalty,
            repetition_window=self.repetition_window,
            name=lambda f: {"max_new_tokens": "max_tokens"}.get(f, f),
        )
        if len(self.stop) > MAX_STOP_SEQUENCES or any(len(s) > MAX_STOP_CHARS for s in self.stop):
            raise GeexError(
                f"stop: at most {MAX_STOP_SEQUENCES} sequences of at most {MAX_STOP_CHARS} "
                f"characters each, got {len(self.stop)} "
                f"(the longest {max(map(len, self.stop))} characters)"
            )

    def sampling(self, max_tokens: int, sample: int = 0) -> SamplingConfig:
        """The sampler's settings; sample ``i`` of a seeded request draws from ``seed + i``
        (modulo 2**64, the generator's seeds: the largest seed's second sample draws from 0)."""
        seed = None if self.seed is None else (self.seed + sample) % (MAX_SEED + 1)
        return SamplingConfig(
            max_new_tokens=max_tokens,
            temperature=self.temperature,
            top_p=self.top_p,
            top_k=self.top_k,
            seed=seed,
            repetition_penalty=self.repetition_penalty,
            repetition_window=self.repetition_window,
        )

    def stop_sequences(self) -> list[str]:
        language = self.language.stop_sequences if self.language else ()
        return [*self.stop, *self.server_stop, *language]


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
    """What the engine needs of a model: a KV cache in numbered slots.

    A runner may also offer ``swap_slots(a, b)`` (exchange two slots' caches); the engine then
    keeps the running sequences in slots ``0 .. batch-1``, which a runner can read in place.
    And ``reusable_prefix(slot, n) -> int``: how many of the ``n`` cached positions a prompt
    shares with ``slot`` a prefill may keep (a sliding-window cache cannot be cut back once
    positions left its window); without it, all of them.
    """

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


@dataclass
class _Job:
    """One submit: ``n`` samples of a prompt, admitted to slots as room frees up."""

    prompt_ids: list[int]
    params: GenerationParams
    handles: list[RequestHandle]
    document: str | None = None
    admitted: int = 0  # samples handed to slots so far, in order
    healed: HealedPrompt = field(default_factory=lambda: HealedPrompt([]))  # spelled first

    def waiting(self) -> int:
        return len(self.handles) - self.admitted


@dataclass
class _Sequence:
    """One sample being decoded in a slot."""

    job: _Job
    sample: int
    slot: int
    max_new: int
    stream: TextStream
    end_ids: frozenset[int]
    position: int  # positions the slot holds: where the next fed token goes
    logits: torch.Tensor | None = None  # of the next token, not sampled yet
    token: int | None = None  # sampled, not fed to the model yet
    num_tokens: int = 0
    generator: torch.Generator | None = None

    @property
    def handle(self) -> RequestHandle:
        return self.job.handles[self.sample]


@dataclass
class _Prefill:
    """A prompt being prefilled into ``slots[0]`` a chunk per step, then copied to the other
    samples' slots."""

    job: _Job
    samples: list[int]
    slots: list[int]
    done: int  # prompt positions cached in slots[0]


_COUNTERS = ("prefill_tokens", "prefix_reused_tokens", "prefix_hits", "decoded_tokens",
             "decode_steps")  # fmt: skip


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


class Engine:
    """Continuous batching over the runner's slots, on a background thread.

    Each step admits queued samples into free slots (up to ``max_batch`` at once), prefills up
    to ``prefill_budget`` prompt tokens (a prompt once for its ``n`` samples, and only past the
    longest prefix a free slot still holds; a long prompt in chunks over several steps), decodes
    one token for every running sequence in a single batched forward pass, samples each row
    with its own settings, and retires finished or cancelled sequences, whose slots are free
    for the next step. Runners with ``swap_slots`` keep running sequences in the lowest slots,
    so that a decode step reads their caches in place.
    """

    # Prompt tokens prefilled per step, between the running sequences' decode steps: a long
    # prompt is prefilled in chunks over several steps, so that neither a long file nor a burst
    # of new requests stalls the streams already running for more than this many tokens' pass.
    prefill_budget = 1024

    def __init__(
        self, runner: Runner, codec: TextCodec, *, max_batch: int = 16, max_queue: int = 64
    ) -> None:
        if max_batch < 1 or max_queue < 1:
            raise GeexError("max_batch and max_queue must be at least 1")
        self.runner, self.codec = runner, codec
        self.max_batch, self.max_queue = max_batch, max_queue
        self._capacity = min(max_batch, runner.num_slots)
        self._swap = getattr(runner, "swap_slots", None)
        self._reusable_prefix = getattr(runner, "reusable_prefix", None)
        self._jobs: collections.deque[_Job] = collections.deque()
        self._documents: dict[str, list[RequestHandle]] = {}
        self._running: list[_Sequence] = []
        self._prefilling: list[_Prefill] = []
        self._slot_ids: list[list[int]] = [[] for _ in range(runner.num_slots)]  # cached ids
        self._slot_used = [0] * runner.num_slots  # when each slot was last written
        self._clock = 0
        self._counts = collections.Counter()
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
                self._drop_cancelled_jobs()  # an editor's superseded keystrokes, say
            if len(self._jobs) >= self.max_queue:
                raise EngineBusy(
                    f"the server is busy: {len(self._jobs)} requests are waiting already",
                    retry_after=1,
                )
            if document is not None:
                for earlier in self._documents.get(document, []):
                    earlier.cancel()
                self._documents[document] = handles
            healed = self._heal(ids)
            self._jobs.append(_Job(healed.ids, params, handles, document, healed=healed))
            self._wake.notify()
        return handles

    def _heal(self, ids: list[int]) -> HealedPrompt:
        """The prompt with its last pre-token backed up, where the codec can heal
        (:mod:`geex.tokenizer.healing`); FIM prompts end with a marker and stay whole."""
        heal = getattr(self.codec, "heal", None)
        return heal(ids) if heal is not None else HealedPrompt(ids)

    def generate(
        self, prompt_ids: Sequence[int], params: GenerationParams, *, n: int = 1
    ) -> list[Completion]:
        """Submit and wait: the completions of ``n`` samples, for callers off the event loop."""
        return [handle.wait() for handle in self.submit(prompt_ids, params, n=n)]

    def stats(self) -> dict:
        """Load and counters: ``prefill_tokens`` computed by prefills, ``prefix_reused_tokens``
        taken from a slot's cache instead, ``decoded_tokens`` fed through batched decode steps."""
        with self._wake:
            return {
                "running": len(self._running) + self._reserved(),
                "prefilling": self._reserved(),
                "queued": sum(job.waiting() for job in self._jobs),
                "slots": self.runner.num_slots,
                "max_batch": self.max_batch,
                "max_queue": self.max_queue,
                **{key: self._counts[key] for key in _COUNTERS},
            }

    def _reserved(self) -> int:
        return sum(len(prefill.samples) for prefill in self._prefilling)

    def close(self) -> None:
        """Stop the thread; running and queued requests end as cancelled."""
        with self._wake:
            self._closed = True
            self._wake.notify()
        self._thread.join(timeout=60)
        with self._wake:
            for job in self._jobs:
                for handle in job.handles[job.admitted :]:
                    handle.finish(Completion("", 0, "cancelled"))
            self._jobs.clear()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- the engine's thread ------------------------------------------------------------

    def _loop(self) -> None:
        while True:
            with self._wake:
                while not (self._jobs or self._running or self._prefilling or self._closed):
                    self._wake.wait()
                if self._closed:
                    break
                admitted = self._take_jobs()
            try:
                self._step(admitted)
            except Exception as err:  # the engine survives; the clients get the error
                self._end_everything(None, err, admitted)
        self._end_everything("cancelled", None)

    def _end_everything(
        self,
        reason: str | None,
        error: BaseException | None,
        admitted: Sequence[tuple[_Job, list[int]]] = (),
    ) -> None:
        """End every sequence, those running or prefilling and those this step took from the
        queue but had not reached when it failed: each handle taken finishes."""
        for prefill in list(self._prefilling):
            self._end_prefill(prefill, reason, error)
        self._retire({id(s): (reason, error) for s in self._running})
        for job, samples in admitted:
            for sample in samples:
                job.handles[sample].finish(
                    None if error else Completion("", 0, reason or "cancelled"), error
                )
            with self._wake:
                self._forget_document(job)

    def _take_jobs(self) -> list[tuple[_Job, list[int]]]:
        """Samples to start this step (under the lock): as many as free running room allows."""
        room = self._capacity - len(self._running) - self._reserved()
        taken = []
        while self._jobs:
            job = self._jobs[0]
            samples = []
            while job.admitted < len(job.handles) and len(samples) < room:
                sample = job.admitted
                job.admitted += 1
                if job.handles[sample].cancelled:
                    job.handles[sample].finish(Completion("", 0, "cancelled"))
                else:
                    samples.append(sample)
            if samples:
                taken.append((job, samples))
                room -= len(samples)
            if job.waiting():
                break  # no room left for the rest of this job
            self._jobs.popleft()
            self._forget_document(job)
        return taken

    def _drop_cancelled_jobs(self) -> None:
        """Free the queue of jobs whose every sample was cancelled before it started."""
        for job in [
            j for j in self._jobs if not j.admitted and all(h.cancelled for h in j.handles)
        ]:
            self._jobs.remove(job)
            for handle in job.handles:
                handle.finish(Completion("", 0, "cancelled"))
            self._forget_document(job)

    def _forget_document(self, job: _Job) -> None:
        if (
            job.document is not None
            and self._documents.get(job.document) is job.handles
            and all(h.done for h in job.handles)
        ):
            del self._documents[job.document]

    @torch.inference_mode()
    def _step(self, admitted: list[tuple[_Job, list[int]]]) -> None:
        self._retire({id(s): ("cancelled", None) for s in self._running if s.handle.cancelled})
        self._drop_cancelled_samples()
        for job, samples in admitted:
            self._admit(job, samples)
        self._advance_prefills()
        feeding = [s for s in self._running if s.token is not None]
        if feeding:
            logits = self.runner.decode(
                [s.slot for s in feeding], [s.token for s in feeding], [s.position for s in feeding]
            )
            for row, seq in enumerate(feeding):
                self._slot_ids[seq.slot].append(seq.token)
                seq.position += 1
                seq.logits, seq.token = logits[row], None
            self._counts["decoded_tokens"] += len(feeding)
            self._counts["decode_steps"] += 1
        self._retire(self._sample_all())

    def _admit(self, job: _Job, samples: list[int]) -> None:
        """Reserve slots for the samples: the prompt is prefilled once, in the free slot that
        holds its longest prefix, from the end of that prefix."""
        prompt = job.prompt_ids
        used = {s.slot for s in self._running}
        used.update(slot for prefill in self._prefilling for slot in prefill.slots)
        free = [slot for slot in range(self.runner.num_slots) if slot not in used]
        shared = [_common_prefix(self._slot_ids[slot], prompt) for slot in free]
        # At least the prompt's last token is computed again: its logits start the sequence.
        reuse = [self._reusable(slot, min(n, len(prompt) - 1))
                 for slot, n in zip(free, shared, strict=True)]  # fmt: skip
        # The longest prefix; without one, the slot written longest ago, so that the caches
        # of the files edited last stay for their next keystroke.
        chosen = max(range(len(free)), key=lambda i: (reuse[i], -self._slot_used[free[i]]))
        best, common = free[chosen], reuse[chosen]
        slots = free[: len(samples)]
        if self._swap is None:
            slots = [best, *[slot for slot in slots if slot != best][: len(samples) - 1]]
        elif best != slots[0]:  # bring it down to the lowest free slot
            try:
                self._swap_slots(best, slots[0])
            except Exception as err:
                for sample in samples:
                    job.handles[sample].finish(None, err)
                return
        self._clock += 1
        for slot in slots:
            self._slot_used[slot] = self._clock
            self._slot_ids[slot] = []  # unknown until written
        self._slot_ids[slots[0]] = prompt[:common]
        self._counts["prefix_reused_tokens"] += common
        self._counts["prefix_hits"] += common > 0
        with self._wake:
            self._prefilling.append(_Prefill(job, samples, slots, common))

    def _reusable(self, slot: int, shared: int) -> int:
        if self._reusable_prefix is None or shared == 0:
            return shared
        return self._reusable_prefix(slot, shared)

    def _advance_prefills(self) -> None:
        """Prefill up to ``prefill_budget`` prompt tokens, oldest prompt first; a prompt done
        is copied to its other samples' slots and its sequences start."""
        budget = self.prefill_budget
        for prefill in list(self._prefilling):
            if budget <= 0:
                break
            prompt, first = prefill.job.prompt_ids, prefill.slots[0]
            chunk = prompt[prefill.done : prefill.done + budget]
            try:
                logits = self.runner.prefill(first, chunk, prefill.done)
                prefill.done += len(chunk)
                self._slot_ids[first] = prompt[: prefill.done]
                if prefill.done == len(prompt):
                    for slot in prefill.slots[1:]:
                        self.runner.copy_slot(first, slot, len(prompt))
                        self._slot_ids[slot] = list(prompt)
            except Exception as err:
                self._end_prefill(prefill, None, err)
                continue
            budget -= len(chunk)
            self._counts["prefill_tokens"] += len(chunk)
            if prefill.done == len(prompt):
                self._start(prefill, logits)

    def _start(self, prefill: _Prefill, logits: torch.Tensor) -> None:
        job, params = prefill.job, prefill.job.params
        end_ids = self.codec.eos_ids | params.stop_token_ids
        stop = params.stop_sequences()
        max_new = min(params.max_tokens, self.runner.context_length - len(job.prompt_ids))
        with self._wake:
            self._prefilling.remove(prefill)
            for slot, sample in zip(prefill.slots, prefill.samples, strict=True):
                stream = TextStream(self.codec.decode, stop, params.language, job.healed.tail)
                self._running.append(_Sequence(job, sample, slot, max_new, stream, end_ids,
                                               len(job.prompt_ids), logits=logits))  # fmt: skip
        self._compact()

    def _drop_cancelled_samples(self) -> None:
        """Cancelled samples leave their prefill (the last reserved slot is given back); a
        prefill left without samples ends, its slot keeping the part of the prompt done."""
        for prefill in list(self._prefilling):
            for sample in [s for s in prefill.samples if prefill.job.handles[s].cancelled]:
                prefill.job.handles[sample].finish(Completion("", 0, "cancelled"))
                with self._wake:
                    prefill.samples.remove(sample)
                    if prefill.samples:
                        prefill.slots.pop()
            if not prefill.samples:
                self._end_prefill(prefill, "cancelled", None)

    def _end_prefill(
        self, prefill: _Prefill, reason: str | None, error: BaseException | None
    ) -> None:
        if error is not None:
            for slot in prefill.slots:
                self._slot_ids[slot] = []  # a failed prefill leaves the cache unknown
        for sample in prefill.samples:
            prefill.job.handles[sample].finish(
                None if error else Completion("", 0, reason or "cancelled"), error
            )
        with self._wake:
            self._prefilling.remove(prefill)
            self._forget_document(prefill.job)

    def _sample_all(self) -> dict[int, tuple[str | None, BaseException | None]]:
        """Draw every running sequence's next token; return those that ended, by id."""
        ended: dict[int, tuple[str | None, BaseException | None]] = {}
        rows = [s for s in self._running if s.logits is not None]
        for seq in rows:  # a healed prompt's tail is spelled first; repeats are penalised
            if seq.job.healed.tail:
                allowed = seq.job.healed.allowed(seq.stream.ids)
                seq.logits = only_allowed(seq.logits[None], [allowed])[0]
            params = seq.job.params
            if params.repetition_penalty != 1:
                window = params.repetition_window  # the prompt's tail only: not copied whole
                recent = (seq.job.prompt_ids[-window:] + seq.stream.ids)[-window:]
                recent = torch.tensor([recent], device=seq.logits.device)
                penalty = params.repetition_penalty
                seq.logits = penalize_repeats(seq.logits[None], recent, penalty)[0]
        # Rows drawn alike share one call: all greedy rows one argmax, unseeded rows of the same
        # settings one sampler call. A seeded row draws alone, from its own generator.
        groups: dict[tuple, list[_Sequence]] = collections.defaultdict(list)
        for seq in rows:
            params = seq.job.params
            if params.temperature < GREEDY_BELOW:
                groups[("greedy",)].append(seq)
            elif params.seed is None:
                groups[(params.temperature, params.top_p, params.top_k)].append(seq)
        for group in groups.values():
            try:
                logits = torch.stack([s.logits for s in group])
                sampling = group[0].job.params.sampling(group[0].max_new)
                tokens = sample_next(logits, sampling).tolist()
            except Exception:  # drawn row by row below, where a failure is that row's
                continue
            for seq, token in zip(group, tokens, strict=True):
                seq.token = token
        for seq in rows:
            try:
                if seq.token is None:
                    seq.token = self._draw(seq)
                reason = self._take_token(seq)
            except Exception as err:  # this request's fault (e.g. NaN logits), not the others'
                reason, seq.token = None, None
                ended[id(seq)] = (None, err)
                continue
            seq.logits = None
            if reason is not None:
                ended[id(seq)] = (reason, None)
        return ended

    def _draw(self, seq: _Sequence) -> int:
        sampling = seq.job.params.sampling(seq.max_new, seq.sample)
        if sampling.seed is not None and seq.generator is None:
            # A generator per sequence: a seeded sample does not depend on its batch mates.
            seq.generator = torch.Generator(device=seq.logits.device)
            seq.generator.manual_seed(sampling.seed)
        return int(sample_next(seq.logits[None], sampling, seq.generator)[0])

    def _take_token(self, seq: _Sequence) -> str | None:
        """Add the sampled token to the text; the finish reason if the sequence ended."""
        token = seq.token
        if token in seq.end_ids:
            seq.token = None
            return "eos"
        seq.num_tokens += 1
        piece, stopped = seq.stream.add(token)
        seq.handle.emit(piece)
        if stopped:
            return "stop"
        if seq.num_tokens >= seq.max_new:
            return "length"
        return None

    def _swap_slots(self, a: int, b: int) -> None:
        """Exchange two slots' caches and everything the engine keeps about them."""
        self._swap(a, b)
        for state in (self._slot_ids, self._slot_used):
            state[a], state[b] = state[b], state[a]
        exchange = {a: b, b: a}
        for seq in self._running:
            seq.slot = exchange.get(seq.slot, seq.slot)
        for prefill in self._prefilling:
            prefill.slots = [exchange.get(slot, slot) for slot in prefill.slots]

    def _compact(self) -> None:
        """Move the running sequences into slots ``0 .. batch-1``, where decode reads them in
        place. Each hole takes the highest running sequence: one swap per hole, where shifting
        every sequence down would cost one per sequence above it."""
        if self._swap is None:
            return
        size = len(self._running)
        holes = sorted(set(range(size)) - {s.slot for s in self._running})
        movers = sorted((s for s in self._running if s.slot >= size), key=lambda s: s.slot)
        for hole, seq in zip(holes, movers, strict=True):
            self._swap_slots(seq.slot, hole)
        self._running.sort(key=lambda s: s.slot)

    def _retire(self, ended: dict[int, tuple[str | None, BaseException | None]]) -> None:
        """Finish the ended sequences, free their slots, and move the running ones down into
        the lowest slots."""
        if not ended:
            return
        keep, jobs = [], {}
        for seq in self._running:
            if id(seq) not in ended:
                keep.append(seq)
                continue
            jobs[id(seq.job)] = seq.job
            self._clock += 1
            self._slot_used[seq.slot] = self._clock
            reason, error = ended[id(seq)]
            if error is not None:
                self._slot_ids[seq.slot] = []  # a failed step leaves the cache unknown
                seq.handle.finish(None, error)
            else:
                seq.handle.emit(seq.stream.finish())
                seq.handle.finish(Completion(seq.stream.text, seq.num_tokens, reason))
        with self._wake:
            self._running = keep
            for job in jobs.values():
                self._forget_document(job)
        self._compact()
