"""What every route of ``geex serve`` shares: the model, the engine, the limits."""

from __future__ import annotations

from dataclasses import dataclass, field

from geex.errors import ConfigError
from geex.serve.engine import Engine
from geex.serve.limits import StreamSlots
from geex.serve.models import ServedModel

MIB = 1024 * 1024


@dataclass(frozen=True)
class ServeLimits:
    """Bounds on what one request may ask, and who may ask."""

    api_key: str | None = None  # None: no key asked (loopback only, by default)
    cors_origins: tuple[str, ...] = ()  # empty: no CORS headers at all
    max_body_bytes: int = 4 * MIB  # a large source file and its context
    max_prompt_tokens: int | None = None  # None: the model's context less one
    max_tokens: int = 2048  # per completion
    max_n: int = 16  # samples per request
    max_streams: int = 64  # concurrent streaming responses

    def __post_init__(self) -> None:
        if self.api_key is not None and not self.api_key.strip():
            raise ConfigError("the API key is empty: give a key, or none")
        for name in ("max_body_bytes", "max_tokens", "max_n", "max_streams"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.max_prompt_tokens is not None and self.max_prompt_tokens < 1:
            raise ConfigError(f"max_prompt_tokens must be at least 1, got {self.max_prompt_tokens}")


@dataclass
class ServerState:
    model: ServedModel
    engine: Engine
    limits: ServeLimits = field(default_factory=ServeLimits)
    streams: StreamSlots = field(init=False)

    def __post_init__(self) -> None:
        self.streams = StreamSlots(self.limits.max_streams)

    def prompt_budget(self) -> int:
        """Prompt tokens a request may use: the context less one, or the configured bound."""
        room = self.model.context_length - 1
        bound = self.limits.max_prompt_tokens
        return min(room, bound) if bound else room
