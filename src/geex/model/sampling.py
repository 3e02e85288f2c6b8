"""How decoding draws tokens: one typed config, free of torch so that ``geex generate`` builds
its flags from it without importing torch (the decoding itself is in
:mod:`geex.model.generation`).

:func:`check_sampling` holds the rules every way of asking for samples shares (``geex
generate``, ``geex serve``'s requests, ``geex eval`` and ``geex run``'s evaluation), so that a
value one of them refuses is refused by all, with the field named as each caller's user knows
it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from geex.config import option
from geex.errors import ConfigError

# torch.Generator.manual_seed takes a 64-bit unsigned seed; a larger one overflows inside it.
MAX_SEED = 2**64 - 1
# Below this temperature decoding is greedy: dividing logits by 1e-39 overflows them to inf
# (NaN probabilities), and any temperature this small picks the likeliest token anyway (vLLM's
# threshold).
GREEDY_BELOW = 1e-5
# The sampler divides float32 logits by the temperature and by the repetition penalty: past
# these bounds a float32 of the divisor is inf or 0 (3.5e38, 1e-46) and the probabilities NaN.
# No sampler needs more: OpenAI takes temperatures up to 2, and a penalty of 100 already
# forbids a repeat.
MAX_TEMPERATURE = 100.0
PENALTY_RANGE = (0.01, 100.0)
# How many tokens back, prompt included, a repetition penalty looks unless told otherwise
# (llama.cpp's and Ollama's repeat_last_n).
REPETITION_WINDOW = 64


def check_sampling(
    *,
    temperature: float,
    top_p: float,
    max_new_tokens: int,
    num_samples: int,
    top_k: int = 0,
    seed: int | None = None,
    repetition_penalty: float = 1.0,
    repetition_window: int = REPETITION_WINDOW,
    name: Callable[[str], str] = str,
) -> None:
    """Refuse sampling settings that cannot work, each named by ``name(field)``.

    A NaN, infinite or float32-overflowing temperature or penalty would turn every probability
    into NaN (a crash in the sampler, or nothing generated), so both are bounded
    (:data:`MAX_TEMPERATURE`, :data:`PENALTY_RANGE`). Below
    ``GREEDY_BELOW`` (1e-5) it is greedy, as 0 is: a tiny temperature would overflow the
    logits it divides.
    """
    if not _is_number(temperature) or not 0 <= temperature <= MAX_TEMPERATURE:
        raise ConfigError(
            f"{name('temperature')} must be from 0 (greedy) to {MAX_TEMPERATURE:g}, "
            f"got {temperature!r}"
        )
    if not _is_number(top_p) or not 0 < top_p <= 1:
        raise ConfigError(f"{name('top_p')} must be in (0, 1], got {top_p!r}")
    if not _is_integer(top_k) or top_k < 0:
        raise ConfigError(f"{name('top_k')} must be an integer >= 0 (0 = off), got {top_k!r}")
    check_penalty(repetition_penalty, name("repetition_penalty"))
    for field, value in (
        ("max_new_tokens", max_new_tokens),
        ("num_samples", num_samples),
        ("repetition_window", repetition_window),
    ):
        if not _is_integer(value) or value < 1:
            raise ConfigError(f"{name(field)} must be an integer >= 1, got {value!r}")
    if seed is not None and (not _is_integer(seed) or not 0 <= seed <= MAX_SEED):
        raise ConfigError(
            f"{name('seed')} must be an integer from 0 to {MAX_SEED} (2**64 - 1), got {seed!r}"
        )
    if num_samples > 1 and temperature < GREEDY_BELOW:
        raise ConfigError(
            f"{name('num_samples')} {num_samples} with temperature {temperature:g} draws "
            f"{num_samples} identical greedy completions (below {GREEDY_BELOW:g} decoding is "
            f"greedy): give {name('temperature')} > 0 (0.8 is usual)"
        )


def check_penalty(value, name: str) -> None:
    """Refuse a repetition penalty the sampler cannot divide by (:data:`PENALTY_RANGE`)."""
    low, high = PENALTY_RANGE
    if not _is_number(value) or not low <= value <= high:
        raise ConfigError(
            f"{name} must be from {low:g} to {high:g} (1 = off, 1.1 is usual), got {value!r}"
        )


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_integer(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass
class SamplingConfig:
    """How continuations are drawn; each field is a ``geex generate`` flag."""

    max_new_tokens: int = option(256, help="tokens to generate at most")
    temperature: float = option(0.0, flags=("--temperature", "-t"), help="0 = greedy")
    top_p: float = option(1.0, help="nucleus sampling: the smallest set of tokens of this "
                          "probability (1 = off)")  # fmt: skip
    top_k: int = option(0, help="sample from the k likeliest tokens (0 = off)")
    num_samples: int = option(1, flags=("-n", "--num-samples"), help="continuations per prompt")
    seed: int | None = option(
        None, help=f"seed of the sampling, for repeatable samples (0 to {MAX_SEED})"
    )
    # None: the model's own (its generation_config.json), which the loader's caller fills in
    # (geex.model.generation_defaults); decoding a bare model object, None is off.
    repetition_penalty: float | None = option(
        None,
        help="divide the score of every token among the last --repetition-window ones by this "
        "(1 = off; llama.cpp and Ollama use 1.1; default: the model's generation_config.json, "
        "else 1)",
    )
    repetition_window: int = option(
        REPETITION_WINDOW,
        help="how many tokens back, prompt included, the repetition penalty looks",
    )

    def __post_init__(self) -> None:
        check_sampling(
            temperature=self.temperature,
            top_p=self.top_p,
            top_k=self.top_k,
            max_new_tokens=self.max_new_tokens,
            num_samples=self.num_samples,
            seed=self.seed,
            repetition_penalty=self.penalty,
            repetition_window=self.repetition_window,
        )

    @property
    def penalty(self) -> float:
        """The repetition penalty decoding applies (1: none)."""
        return 1.0 if self.repetition_penalty is None else self.repetition_penalty
