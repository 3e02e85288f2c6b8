"""What every route of ``geex serve`` shares: the model, the engine, the limits."""

from __future__ import annotations

from dataclasses import dataclass, field

from geex.serve.engine import Engine
from geex.serve.models import ServedModel


@dataclass(frozen=True)
class ServeLimits:
    """Bounds on what one request may ask, and who may ask."""

    api_key: str | None = None  # None: no key asked (loopback only, by default)
    cors_origins: tuple[str, ...] = ()  # empty: no CORS headers at all
    max_body_bytes: int = 4 * 1024 * 1024  # a large source file and its context
    max_prompt_tokens: int | None = None  # None: the model's context less one
    max_tokens: int = 2048  # per completion
    max_n: int = 16  # samples per request
    max_streams: int = 64  # concurrent streaming responses


@dataclass
class ServerState:
    model: ServedModel
    engine: Engine
    limits: ServeLimits = field(default_factory=ServeLimits)

    def prompt_budget(self) -> int:
        """Prompt tokens a request may use: the context less one, or the configured bound."""
        room = self.model.context_length - 1
        bound = self.limits.max_prompt_tokens
        return min(room, bound) if bound else room
