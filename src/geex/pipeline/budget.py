"""The budget of ``geex run``: wall time of the whole run, or a number of training tokens.

A time budget covers every stage, so ``--budget 10m`` ends in about ten minutes: training gets
what the data stage left, less a reserve for evaluation, export and the report (estimated
from how much there is to judge). A token budget fixes training alone; the other stages take
what they take.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from geex.errors import ConfigError

# Seconds to generate and judge one problem with the tiny model on a 2-core machine (greedy,
# up to 256 new tokens; compiling C++, Java and Rust dominates: the 60 problems of the
# embedded set took 13 s), with a margin, and fixed costs: loading the model, the export to
# Hugging Face format, sample completions and the report (10 s together), the validation at
# training's last step, which runs once its time is spent, and the reference programs' bits
# per byte (a forward pass each: about 5 s together for the tiny model).
SECONDS_PER_PROBLEM = 0.75
FIXED_AFTER_TRAINING_S = 25.0
# Training gets at least this share of a time budget, whatever the other stages took.
MIN_TRAINING_SHARE = 0.2


@dataclass
class Budget:
    seconds: float | None = None
    tokens: int | None = None

    def __str__(self) -> str:
        if self.seconds is not None:
            return format_duration(self.seconds)
        return f"{self.tokens:,} tokens"


def parse_budget(text: str) -> Budget:
    """A wall time (``90s``, ``10m``, ``2h``) or a token count (``500k tokens``, ``2M tokens``:
    the word "tokens" is required, since "10m" means ten minutes)."""
    spec = str(text).strip().lower()
    if spec.endswith("tokens"):
        match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([kmgb]?)", spec.removesuffix("tokens").strip())
        if match:
            scale = {"": 1, "k": 1e3, "m": 1e6, "g": 1e9, "b": 1e9}[match[2]]
            budget = Budget(tokens=int(float(match[1]) * scale))
    else:
        match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(s|m|h)", spec)
        if match:
            budget = Budget(seconds=float(match[1]) * {"s": 1, "m": 60, "h": 3600}[match[2]])
    if match and (budget.tokens or budget.seconds):
        return budget
    if match:
        raise ConfigError(f"budget {text!r} must be more than nothing")
    raise ConfigError(
        f"budget {text!r} is neither a time (90s, 10m, 2h) nor a token count "
        f"(500k tokens, 2M tokens, 850B tokens)"
    )


def after_training_seconds(problems: int, samples_per_problem: int) -> float:
    """What evaluation, export, samples and the report are expected to take."""
    return FIXED_AFTER_TRAINING_S + SECONDS_PER_PROBLEM * problems * samples_per_problem


def training_seconds(budget: Budget, elapsed: float, reserve: float) -> float:
    """The training time a time budget leaves after ``elapsed`` and before ``reserve``."""
    assert budget.seconds is not None
    return max(budget.seconds - elapsed - reserve, MIN_TRAINING_SHARE * budget.seconds)


def format_duration(seconds: float) -> str:
    seconds = round(seconds)
    if seconds >= 3600:
        hours, rest = divmod(seconds, 3600)
        return f"{hours} h" + (f" {rest // 60} min" if rest >= 60 else "")
    if seconds >= 60:
        minutes, rest = divmod(seconds, 60)
        return f"{minutes} min" + (f" {rest} s" if rest else "")
    return f"{seconds} s"
