"""Where completions come from: canonical solutions, a samples file, or a model backend.

A model backend is anything with ``generate(prompts, stops, sampling)`` that returns, per
prompt, ``sampling.n`` completions (text after the prompt). Geex checkpoints, Hugging Face
models and OpenAI-compatible endpoints plug in here; ``generate_samples`` asks only for the
samples a resumed run still lacks and cuts each completion with the language's stop rule,
whether or not the backend honoured it.

torch (through :mod:`geex.serve.completion`) is imported inside a function, so that the
HTTP backends and the sampling settings stay light.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from geex.config import option
from geex.errors import ConfigError, GeexError
from geex.eval.problems import lone_surrogate, numbered_records
from geex.eval.programs import cut_generation
from geex.eval.tasks import Task
from geex.languages import Language
from geex.model.sampling import REPETITION_WINDOW, check_sampling

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Sample:
    """One completion of one task, to be judged."""

    task: Task
    completion_id: int
    generation: str

    @property
    def key(self) -> tuple[str, int]:
        return self.task.task_id, self.completion_id


@dataclass(frozen=True)
class StopRule:
    """When a completion is over: at any of ``sequences``; at the first line that starts at
    column 0 (``column_zero``, Python: the body is indented); or at the ``}`` that closes the
    function the prompt opened (``closing_brace``)."""

    sequences: tuple[str, ...]
    column_zero: bool
    closing_brace: bool

    @classmethod
    def for_language(cls, language: Language) -> StopRule:
        python = language.key == "python"
        return cls(language.stop_sequences, python, language.brace_delimited)

    def end(self, text: str) -> int | None:
        """Where to cut ``text``, or None when the completion may go on."""
        ends = [i for i in (text.find(s) for s in self.sequences if s) if i >= 0]
        if self.column_zero:
            line = _COLUMN_ZERO.search(text)
            if line:
                ends.append(line.start())
        if self.closing_brace:
            from geex.serve.completion import closing_brace_end

            brace = closing_brace_end(text)
            if brace is not None:
                ends.append(brace)
        return min(ends) if ends else None


_COLUMN_ZERO = re.compile(r"\n(?=\S)")


@dataclass(frozen=True)
class Sampling:
    """How completions are drawn; each field is a ``geex eval`` flag (``--top-p``)."""

    n: int = option(1, help="completions per problem")
    temperature: float = option(0.0, help="0 = greedy")
    top_p: float = 1.0
    max_new_tokens: int = 512
    repetition_penalty: float | None = option(
        None,
        help=f"make the tokens among the last {REPETITION_WINDOW} less likely by this factor (1 = off, as "
        "published HumanEval-X figures were made; llama.cpp and Ollama use 1.1; default: the "
        "model's generation_config.json, else 1; an endpoint's: the server's)",
    )
    token_healing: bool = option(
        True,
        flags=("--no-token-healing",),
        help="decode from the prompt's tokens as they are, without healing its last word "
        "(docs/tokenizer.md); published HumanEval-X figures were made so",
    )

    def check(self, batch_size: int, name: Callable[[str], str]) -> None:
        """Refuse settings that cannot work, each field named as the caller's user knows it
        (``name("top_p")`` is ``--top-p`` on the command line, ``eval.top_p`` in a run file).
        The rules are decoding's own (:func:`geex.model.sampling.check_sampling`)."""
        check_sampling(
            temperature=self.temperature,
            top_p=self.top_p,
            max_new_tokens=self.max_new_tokens,
            num_samples=self.n,
            repetition_penalty=self.penalty,
            name=lambda field: name("n" if field == "num_samples" else field),
        )
        if batch_size < 1:
            raise ConfigError(f"{name('batch_size')} must be >= 1, got {batch_size}")

    def describe(self) -> str:
        """The settings as a report's title gives them: "n=1, temperature 0" and any penalty."""
        text = f"n={self.n}, temperature {self.temperature:g}"
        return text + (f", repetition penalty {self.penalty:g}" if self.penalty != 1 else "")

    @property
    def penalty(self) -> float:
        """The repetition penalty decoding applies (1: none; unset is none)."""
        return 1.0 if self.repetition_penalty is None else self.repetition_penalty

    def with_default_penalty(self, model_penalty: float | None) -> Sampling:
        """These settings with the model's own repetition penalty (its
        ``generation_config.json``: :mod:`geex.model.generation_defaults`) where none is set,
        so that a results file's fingerprint names the penalty the samples were made with."""
        if self.repetition_penalty is not None or model_penalty is None:
            return self
        return dataclasses.replace(self, repetition_penalty=model_penalty)


class PromptFitter:
    """Prompts cut to a model's context of ``context`` positions so that the completion gets
    what it asks for, up to half the context: cut from the left (after the first ``keep``
    ids, a BOS), since the end of the prompt (the signature) is what the model answers from.
    A small model still gets to answer; the reference harness does not cut for it. Warns once.
    """

    def __init__(self, context: int) -> None:
        self.context = context
        self._warned = False

    def room(self, max_new_tokens: int) -> int:
        """The tokens a completion may take: all it asks for, up to half the context."""
        return min(max_new_tokens, self.context // 2)

    def prompt_budget(self, max_new_tokens: int) -> int:
        return self.context - self.room(max_new_tokens)

    def fit(self, ids: list[int], max_new_tokens: int, *, keep: int = 0) -> list[int]:
        limit = self.prompt_budget(max_new_tokens)
        if len(ids) <= limit:
            return ids
        if not self._warned:
            log.warning(
                "prompts longer than %d tokens are cut from the left to fit the model's "
                "context of %d tokens", limit, self.context,
            )  # fmt: skip
            self._warned = True
        return ids[:keep] + ids[len(ids) - (limit - keep) :]


class GenerationBackend(Protocol):
    def generate(
        self, prompts: Sequence[str], stops: Sequence[StopRule], sampling: Sampling
    ) -> list[list[str]]:
        """``sampling.n`` completions for each prompt: ``out[prompt][sample]``."""
        ...


class InfillBackend(Protocol):
    def infill(
        self, holes: Sequence[tuple[str, str]], stops: Sequence[StopRule], sampling: Sampling
    ) -> list[list[str]]:
        """``sampling.n`` middles for each (prefix, suffix), in the model's FIM format."""
        ...


class FunctionBackend:
    """A backend from a plain function ``prompt -> completion`` (tests, simple baselines)."""

    def __init__(self, complete: Callable[[str], str]) -> None:
        self.complete = complete

    def generate(
        self, prompts: Sequence[str], stops: Sequence[StopRule], sampling: Sampling
    ) -> list[list[str]]:
        return [[self.complete(p) for _ in range(sampling.n)] for p in prompts]


@dataclass(frozen=True)
class HoleRules:
    """How a benchmark of holes (fill in the middle) stops and finishes a model's middle: the
    benchmark's module says, so that this one need not import it."""

    stop_rule: Callable[[Task], StopRule]
    finish: Callable[[Task, str], str]


def generate_samples(
    backend: GenerationBackend,
    tasks: Sequence[Task],
    sampling: Sampling,
    *,
    done: Iterable[tuple[str, int]] = (),
    batch_size: int = 8,
    holes: HoleRules | None = None,
) -> Iterator[Sample]:
    """Samples 0..n-1 of every task, skipping the (task_id, completion_id) pairs in ``done``.

    A task missing some samples is asked for as many as it misses, so a resumed run draws
    fresh completions for them rather than repeating earlier ones. ``holes``: the tasks are
    holes (``geex.eval.infill``), asked for with their suffix through ``backend.infill`` and
    stopped and finished by these rules.
    """
    infill = holes is not None
    if holes is not None:
        stop_rule, finish = holes.stop_rule, holes.finish
    else:
        stop_rule = lambda task: StopRule.for_language(task.language)  # noqa: E731
        finish = lambda task, text: cut_generation(text, task.language)  # noqa: E731
    done = set(done)
    pending = []
    for task in tasks:
        missing = [i for i in range(sampling.n) if (task.task_id, i) not in done]
        if missing:
            pending.append((task, missing))
    for start in range(0, len(pending), batch_size):
        batch = pending[start : start + batch_size]
        # One call per distinct count, as the backend draws the same n for every prompt.
        by_count: dict[int, list[tuple[Task, list[int]]]] = {}
        for task, missing in batch:
            by_count.setdefault(len(missing), []).append((task, missing))
        for count, items in by_count.items():
            stops = [stop_rule(task) for task, _ in items]
            if infill:
                holes = [(task.prompt, task.suffix) for task, _ in items]
                outputs = backend.infill(holes, stops, _with_n(sampling, count))
            else:
                prompts = [task.prompt for task, _ in items]
                outputs = backend.generate(prompts, stops, _with_n(sampling, count))
            if len(outputs) != len(items):
                raise GeexError(f"the backend answered {len(outputs)} prompts of {len(items)}")
            for (task, missing), texts in zip(items, outputs, strict=True):
                for completion_id, text in zip(missing, texts, strict=False):
                    yield Sample(task, completion_id, finish(task, text))


def _with_n(sampling: Sampling, n: int) -> Sampling:
    return dataclasses.replace(sampling, n=n)


def canonical_samples(tasks: Sequence[Task]) -> list[Sample]:
    """Each task's canonical solution as its one sample: proof that the judge is right."""
    return [Sample(task, 0, task.problem.canonical_solution) for task in tasks]


def read_samples(
    path: str | Path, tasks: Sequence[Task], *, other_task_ids: Iterable[str] = ()
) -> list[Sample]:
    """Samples from a ``.jsonl(.gz)`` of lines with ``task_id`` and ``generation`` (CodeGeeX's
    released format; ``completion`` is accepted too, ``completion_id`` is optional).

    Lines for ``other_task_ids`` (tasks of the benchmark left out of this run, e.g. by
    ``--languages``) are skipped; any other task id is an error.
    """
    path = Path(path)
    if not path.is_file():
        raise GeexError(f"samples file {path} does not exist")
    by_id = {task.task_id: task for task in tasks}
    skipped = set(other_task_ids)
    samples: list[Sample] = []
    next_id: dict[str, int] = {}
    unknown: list[str] = []
    lines = 0
    for number, record in numbered_records(path):
        lines += 1
        task_id = record.get("task_id")
        text = record.get("generation", record.get("completion"))
        if not isinstance(task_id, str) or not isinstance(text, str):
            raise GeexError(f"{path}:{number}: a sample needs 'task_id' and 'generation' strings")
        task = by_id.get(task_id)
        if task is None:
            if task_id not in skipped:
                unknown.append(task_id)
            continue
        completion_id = record.get("completion_id")
        if completion_id is not None and (
            not isinstance(completion_id, int) or isinstance(completion_id, bool)
            or completion_id < 0
        ):  # fmt: skip
            raise GeexError(
                f"{path}:{number}: 'completion_id' must be a whole number >= 0, "
                f"got {completion_id!r:.40}"
            )
        if completion_id is None:
            completion_id = next_id.get(task_id, 0)
        next_id[task_id] = max(next_id.get(task_id, 0), completion_id + 1)
        surrogate = lone_surrogate(text)
        if surrogate:
            # Half of a character pair (a model's output cut mid-character): no program file
            # can hold it, so the sample is judged with U+FFFD in its place, as a decoder would.
            log.warning(
                "%s:%d: the generation of %s holds a lone surrogate (%s): judged with U+FFFD "
                "in its place", path, number, task_id, surrogate,
            )  # fmt: skip
            text = "".join("\ufffd" if 0xD800 <= ord(c) <= 0xDFFF else c for c in text)
        samples.append(Sample(task, completion_id, text))
    if not lines:
        raise GeexError(f"samples file {path} holds no samples")
    if unknown:
        shown = ", ".join(list(dict.fromkeys(unknown))[:5])
        raise GeexError(
            f"{path}: {len(unknown)} sample(s) name tasks this benchmark does not have "
            f"(e.g. {shown}); check --task and --data"
        )
    if not samples:
        raise GeexError(
            f"{path}: none of its {lines} sample(s) is of a task this run judges: check "
            "--languages and --limit"
        )
    seen: set[tuple[str, int]] = set()
    for sample in samples:
        if sample.key in seen:
            raise GeexError(
                f"{path}: {sample.task.task_id} has completion_id {sample.completion_id} twice"
            )
        seen.add(sample.key)
    return samples
