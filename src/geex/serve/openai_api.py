"""The OpenAI completions API as Geex speaks it: the request, its checks, the response shapes.

Only the wire format lives here; :mod:`geex.serve.server` runs the model. Fields follow
OpenAI's ``POST /v1/completions`` with its defaults (``max_tokens`` 16, ``temperature`` 1),
so that clients written for OpenAI, vLLM or llama.cpp work unchanged. One field is Geex's
own: ``language`` adds CodeGeeX's language tag line to the prompt and the language's stop
rules. Fields a client may send but Geex cannot honour (log probabilities, penalties, fill in
the middle) are refused with a 400 that says so, rather than silently ignored.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from pydantic import BaseModel, ConfigDict

from geex.errors import GeexError
from geex.languages import get_language

# OpenAI's finish reasons: a stop rule and the end of the document both mean "stop".
FINISH_REASONS = {"stop": "stop", "eos": "stop", "length": "length"}


class ApiError(Exception):
    """An error answered as OpenAI does: ``{"error": {"message", "type", "param", "code"}}``."""

    def __init__(
        self,
        message: str,
        *,
        status: int = 400,
        param: str | None = None,
        code: str | None = None,
        kind: str = "invalid_request_error",
    ) -> None:
        super().__init__(message)
        self.message, self.status, self.param, self.code, self.kind = (
            message,
            status,
            param,
            code,
            kind,
        )

    def body(self) -> dict:
        return error_body(self.message, kind=self.kind, param=self.param, code=self.code)


def error_body(message: str, *, kind: str = "invalid_request_error", param=None, code=None) -> dict:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


class CompletionRequest(BaseModel):
    """``POST /v1/completions``; unknown fields are ignored, as OpenAI-compatible servers do."""

    model_config = ConfigDict(extra="ignore")

    model: str | None = None
    prompt: str | list[str]
    max_tokens: int = 16
    temperature: float = 1.0
    top_p: float = 1.0
    n: int = 1
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    seed: int | None = None
    echo: bool = False
    language: str | None = None  # Geex: tag line and stop rules of this language

    # Accepted only at values that change nothing.
    logprobs: int | None = None
    best_of: int | None = None
    suffix: str | None = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    logit_bias: dict[str, float] | None = None

    @property
    def prompts(self) -> list[str]:
        return [self.prompt] if isinstance(self.prompt, str) else list(self.prompt)

    @property
    def stop_sequences(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)

    @property
    def include_usage_chunk(self) -> bool:
        return bool((self.stream_options or {}).get("include_usage"))


def check_request(request: CompletionRequest, served_name: str, max_rows: int) -> None:
    """Refuse values the model cannot serve, with a message that says what to change."""
    if request.model is not None and request.model != served_name:
        raise ApiError(
            f"the model {request.model!r} is not served here; this server serves {served_name!r}",
            status=404,
            param="model",
            code="model_not_found",
        )
    if not request.prompts:
        raise ApiError("prompt is an empty list", param="prompt")
    if any(p == "" for p in request.prompts) and request.language is None:
        raise ApiError("prompt is empty: give some text to continue", param="prompt")
    if request.max_tokens < 1:
        raise ApiError(f"max_tokens must be >= 1, got {request.max_tokens}", param="max_tokens")
    if request.temperature < 0:
        raise ApiError(
            f"temperature must be >= 0 (0 is greedy), got {request.temperature}",
            param="temperature",
        )
    if not 0 < request.top_p <= 1:
        raise ApiError(f"top_p must be in (0, 1], got {request.top_p}", param="top_p")
    if request.n < 1:
        raise ApiError(f"n must be >= 1, got {request.n}", param="n")
    if request.n > 1 and request.temperature == 0:
        raise ApiError(
            f"n={request.n} with temperature 0 would return {request.n} identical greedy "
            "completions: set temperature > 0 to sample, or n to 1",
            param="n",
        )
    rows = request.n * len(request.prompts)
    if rows > max_rows:
        raise ApiError(
            f"{len(request.prompts)} prompt(s) x n={request.n} = {rows} completions; this "
            f"server decodes at most {max_rows} per request",
            param="n",
        )
    if any(s == "" for s in request.stop_sequences):
        raise ApiError("stop sequences must not be empty strings", param="stop")
    if request.language is not None:
        try:
            get_language(request.language)
        except GeexError as err:
            raise ApiError(str(err), param="language") from None
    _refuse_unsupported(request)


def _refuse_unsupported(request: CompletionRequest) -> None:
    unsupported = {
        "logprobs": request.logprobs not in (None, 0),
        "best_of": request.best_of not in (None, 1, request.n),
        "suffix": bool(request.suffix),
        "presence_penalty": request.presence_penalty != 0,
        "frequency_penalty": request.frequency_penalty != 0,
        "logit_bias": bool(request.logit_bias),
    }
    for field, asked in unsupported.items():
        if asked:
            raise ApiError(f"{field} is not supported by the Geex server", param=field)


def new_completion_id() -> str:
    return f"cmpl-{uuid.uuid4().hex}"


def completion_response(
    completion_id: str,
    model: str,
    texts: list[str],
    finish_reasons: list[str],
    prompt_tokens: int,
    completion_tokens: int,
) -> dict:
    """The non-streamed answer: one choice per (prompt, sample), prompt-major."""
    return {
        "id": completion_id,
        "object": "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {"index": i, "text": text, "logprobs": None, "finish_reason": reason}
            for i, (text, reason) in enumerate(zip(texts, finish_reasons, strict=True))
        ],
        "usage": usage(prompt_tokens, completion_tokens),
    }


def usage(prompt_tokens: int, completion_tokens: int) -> dict:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def stream_chunk(
    completion_id: str,
    model: str,
    choices: list[dict],
    usage_fields: dict | None = None,
) -> str:
    """One server-sent event of a streamed completion."""
    chunk = {
        "id": completion_id,
        "object": "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": choices,
    }
    if usage_fields is not None:
        chunk["usage"] = usage_fields
    return f"data: {json.dumps(chunk)}\n\n"


def text_choice(index: int, text: str, finish_reason: str | None = None) -> dict:
    return {"index": index, "text": text, "logprobs": None, "finish_reason": finish_reason}


STREAM_END = "data: [DONE]\n\n"
