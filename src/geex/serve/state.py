"""What every route of ``geex serve`` shares: the model, the engine, the limits."""

from __future__ import annotations

from dataclasses import dataclass, field

from geex.serve.engine import Engine
from geex.serve.limits import StreamSlots
from geex.serve.models import ServedModel
from geex.serve.serve_limits import MIB, ServeLimits

__all__ = ["MIB", "ServeLimits", "ServerState"]


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
