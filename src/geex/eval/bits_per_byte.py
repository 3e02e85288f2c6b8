"""Bits per byte of a benchmark's reference programs under a model: a score without sampling.

Each problem's reference program is what a model is asked to continue and the canonical
solution that continues it: the generation prompt (with its language tag line) followed by the
solution, as text. Its information under the model is the sum over its tokens of
``-ln p(token | every token before it)``, the first token predicted after the model's start of
a document (Geex's end-of-document token; a Hugging Face model's BOS, else its EOS; a
tokenizer with neither has no start to predict from, so its text is scored from its second
token on, the first one's information left out). Only the tokenizer's ids share the
probability: the rows a model's vocabulary is padded with are never a text's token. Divided by
ln 2 and by the text's UTF-8 bytes, that is bits per byte, which compares across tokenizers
and models: a tokenizer that cuts the text into fewer, longer tokens has more to predict per
token, and the same information per byte. Lower is better.

A program longer than the model's context is scored in windows of the full context, each one
half a context on from the last, so that every token after the first window is predicted from
at least half a context of the tokens before it.

An OpenAI-compatible endpoint would have to return the log-probabilities of the prompt's own
tokens (``echo`` with ``logprobs``); ``geex serve`` returns none, so endpoints are not scored.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Protocol

import torch

from geex.eval.problems import Problem
from geex.eval.tasks import generation_prompt

ALL = "all"


class TextScorer(Protocol):
    def text_nll(self, texts: Sequence[str]) -> list[tuple[float, int]]:
        """For each text: its information in nats under the model, and its token count."""
        ...


def reference_program(problem: Problem) -> str:
    """The text scored for ``problem``: its generation prompt, then its canonical solution."""
    return generation_prompt(problem) + problem.canonical_solution


def windowed_nll(
    logits_of: Callable[[list[int]], torch.Tensor], ids: list[int], context: int
) -> float:
    """``-sum(ln p(ids[i] | ids[:i]))`` over i >= 1, in nats, with ``ids[0]`` the start token.

    ``logits_of(window)`` gives the logits ``(len(window), vocab)`` of the tokens after each
    position of a window of at most ``context`` tokens.
    """
    if context < 2:
        raise ValueError(f"a context of {context} token(s) leaves nothing to predict from")
    stride = context // 2
    total, scored = 0.0, 1  # ids[scored:] are still to be predicted
    while scored < len(ids):
        end = min(len(ids), max(scored + stride, context + 1))
        start = max(0, end - context - 1)
        window = ids[start:end]
        logprobs = torch.log_softmax(logits_of(window[:-1]).float(), dim=-1)
        first = scored - start - 1  # the first position whose next token is not yet scored
        targets = torch.tensor(window[1:][first:], device=logprobs.device)
        total -= float(logprobs[first:].gather(-1, targets[:, None]).double().sum())
        scored = end
    return total


def texts_nll(
    forward: Callable[[torch.Tensor], torch.Tensor],
    encode: Callable[[str], list[int]],
    texts: Sequence[str],
    *,
    start: int | None,
    vocab_size: int,
    context: int,
    device: torch.device,
) -> list[tuple[float, int]]:
    """For each text: its information in nats after ``start`` (from its second token on,
    without one), and the tokens it is measured on (:class:`TextScorer`).

    ``forward(ids)`` gives a model's logits ``(1, len, padded vocabulary)`` for ids ``(1, len)``;
    only the first ``vocab_size`` (the tokenizer's ids) are kept.
    """

    def logits_of(ids: list[int]) -> torch.Tensor:
        with torch.inference_mode():
            return forward(torch.tensor([ids], device=device))[0, :, :vocab_size]

    scored = []
    for text in texts:
        ids = ([] if start is None else [start]) + encode(text)
        scored.append((windowed_nll(logits_of, ids, context), max(len(ids) - 1, 0)))
    return scored


def reference_bits_per_byte(scorer: TextScorer, problems: Iterable[Problem]) -> dict[str, dict]:
    """Per language (by name) and over all of them: ``bits_per_byte``, with the ``problems``,
    ``bytes`` and ``tokens`` it is measured on."""
    problems = list(problems)
    texts = [reference_program(problem) for problem in problems]
    sums: dict[str, list[float]] = {}
    for problem, text, (nats, tokens) in zip(problems, texts, scorer.text_nll(texts), strict=True):
        for group in (problem.language.name, ALL):
            row = sums.setdefault(group, [0, 0.0, 0, 0])
            row[0] += 1
            row[1] += nats
            row[2] += len(text.encode("utf-8"))
            row[3] += tokens
    if ALL in sums:
        sums[ALL] = sums.pop(ALL)  # last, as in the score tables
    return {
        group: {
            "bits_per_byte": round(nats / math.log(2) / max(nbytes, 1), 6),
            "problems": count,
            "bytes": nbytes,
            "tokens": tokens,
        }
        for group, (count, nats, nbytes, tokens) in sums.items()
    }
