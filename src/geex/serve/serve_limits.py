"""What ``geex serve`` lets one request ask, and who may ask: :class:`ServeLimits`.

Free of torch and the web stack, so that ``geex serve``'s flags are built from its fields (one
config, one path to the command line, as :class:`geex.model.load_options.LoadOptions`) and
``geex --help`` stays fast. :mod:`geex.serve.limits` applies the bounds to requests;
:mod:`geex.serve.security` the key, CORS and the body size.
"""

from __future__ import annotations

from dataclasses import dataclass

from geex.config import megabytes, option
from geex.errors import ConfigError

# A request's stop sequences (OpenAI's own bound): every one is searched for in the new text
# at every token, on the engine's thread that all requests share.
MAX_STOP_SEQUENCES, MAX_STOP_CHARS = 16, 256

MIB = 1024 * 1024
API_KEY_ENV = "GEEX_API_KEY"  # where `geex serve` reads the key when --api-key is not given
_SECURITY, _LIMITS = "security", "limits"  # groups of `geex serve -h`


def cors_origin(word: str) -> str:
    """An origin a browser page may call from: ``https://host[:port]``, or ``*`` for any."""
    origin = word.strip()
    if not origin:
        raise ConfigError("a CORS origin is empty: give a scheme and host, or '*'")
    return origin


@dataclass(frozen=True)
class ServeLimits:
    """Bounds on what one request may ask, and who may ask; each field is a ``geex serve``
    flag (its :func:`geex.config.option` says how)."""

    api_key: str | None = option(  # None: no key asked (loopback only, by default)
        None,
        metavar="KEY",
        group=_SECURITY,
        help=f"clients must send 'Authorization: Bearer KEY' (default: ${API_KEY_ENV}; "
        "/health, / and the playground's files stay open)",
    )
    cors_origins: tuple[str, ...] = option(  # empty: no CORS headers at all
        (),
        flags="--cors-origin",
        append=True,
        parse=cors_origin,
        to_field=tuple,
        metavar="ORIGIN",
        group=_SECURITY,
        help="let browser pages from ORIGIN call the API (repeatable; '*' for any)",
    )
    max_body_bytes: int = option(  # a large source file and its context
        4 * MIB,
        flags="--max-body-mb",
        parse=megabytes,
        metavar="MB",
        group=_LIMITS,
        help="largest request body, in MiB (default 4)",
    )
    max_prompt_tokens: int | None = option(  # None: the model's context less one
        None,
        metavar="N",
        group=_LIMITS,
        help="longest prompt (default: the model's context less one)",
    )
    max_tokens: int = option(
        2048, metavar="N", group=_LIMITS, help="most new tokens per completion (default 2048)"
    )
    max_n: int = option(16, metavar="N", group=_LIMITS, help="most completions per request "
                        "(default 16)")  # fmt: skip
    max_streams: int = option(
        64,
        metavar="N",
        group=_LIMITS,
        help="most streaming responses open at once, of every protocol (default 64)",
    )

    def __post_init__(self) -> None:
        if self.api_key is not None and not self.api_key.strip():
            raise ConfigError(
                f"the API key (--api-key, ${API_KEY_ENV}) is empty: give a key, or none"
            )
        flags = {"max_body_bytes": "--max-body-mb", "max_tokens": "--max-tokens",
                 "max_n": "--max-n", "max_streams": "--max-streams"}  # fmt: skip
        for name, flag in flags.items():
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} ({flag}) must be at least 1, got {getattr(self, name)}")
        if self.max_prompt_tokens is not None and self.max_prompt_tokens < 1:
            raise ConfigError(
                "max_prompt_tokens (--max-prompt-tokens) must be at least 1, "
                f"got {self.max_prompt_tokens}"
            )
