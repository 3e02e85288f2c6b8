"""OpenAI's completions and chat completions APIs as Geex speaks them: requests, checks, shapes.

Only the wire format lives here; :mod:`geex.serve.openai_routes` runs the requests on the
engine. Fields follow OpenAI's with its defaults (``max_tokens`` 16 for completions,
``temperature`` 1), so that clients written for OpenAI, vLLM or llama.cpp work unchanged. One
field is Geex's own: ``language`` adds CodeGeeX's language tag line to the prompt and the
language's stop rules.

Fields the ``openai`` package and editors send routinely (``user``, ``tools``,
``parallel_tool_calls``, ``logprobs: false``, ``metadata``...) are accepted and ignored. A field
is refused with a 400 only where ignoring it would hand the client something other than what it
asked for: log probabilities, penalties, a logit bias, a forced tool call, a JSON-only answer.
Floats must be finite: a NaN temperature is a 400, not a sampler fault.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator

from geex.errors import GeexError
from geex.languages import get_language
from geex.model.sampling import GREEDY_BELOW, MAX_TEMPERATURE
from geex.serve.request_body import RequestError
from geex.serve.serve_limits import MAX_STOP_CHARS, MAX_STOP_SEQUENCES

# OpenAI's finish reasons: a stop rule and the end of the document both mean "stop"; a sequence
# cancelled (the server stopping) ends as "stop" too, as OpenAI has no other word for it.
FINISH_REASONS = {"stop": "stop", "eos": "stop", "length": "length", "cancelled": "stop"}


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
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message, self.status, self.param, self.code, self.kind = (
            message,
            status,
            param,
            code,
            kind,
        )
        self.headers = headers

    def body(self) -> dict:
        return error_body(self.message, kind=self.kind, param=self.param, code=self.code)

    @classmethod
    def of(cls, err: RequestError) -> ApiError:
        """A refusal of the shared body reader, in OpenAI's shape."""
        return cls(err.message, status=err.status, param=err.param, headers=err.headers())


def busy_error(message: str, retry_after: int | None) -> ApiError:
    """The one answer to a busy server (a full queue, every stream slot taken) in OpenAI's
    shape, whichever route meets it: a 429 with ``Retry-After``, as the ``openai`` package
    retries it."""
    return ApiError(message, status=429, code="rate_limit_exceeded", kind="rate_limit_error",
                    headers={"Retry-After": str(retry_after or 1)})  # fmt: skip


def error_body(message: str, *, kind: str = "invalid_request_error", param=None, code=None) -> dict:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


class _Request(BaseModel):
    """What both APIs share; unknown fields are ignored, as OpenAI-compatible servers do."""

    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)

    model: str | None = None
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0  # not OpenAI's, but vLLM's and llama.cpp's: 0 keeps every token
    n: int = 1
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    seed: int | None = None
    # vLLM's, not OpenAI's: tokens among the last 64 made less likely (1 = off); none: the
    # model's own (its generation_config.json, as vLLM), else off
    repetition_penalty: float | None = None

    # Accepted only at values that change nothing.
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    logit_bias: dict[str, float] | None = None

    @model_validator(mode="before")
    @classmethod
    def _null_is_default(cls, data: Any) -> Any:
        """``null`` for a field with a default means the default: OpenAI's spec makes
        ``temperature``, ``top_p``, ``n``, ``max_tokens``, ``stream``, ``echo``... nullable, and
        clients (the ``openai`` package's callers, LangChain) send ``null`` for "unset"."""
        if not isinstance(data, dict):
            return data
        fields = cls.model_fields
        return {
            key: value
            for key, value in data.items()
            if value is not None or key not in fields or fields[key].is_required()
        }

    @property
    def stop_sequences(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)

    @property
    def include_usage_chunk(self) -> bool:
        return bool((self.stream_options or {}).get("include_usage"))


class CompletionRequest(_Request):
    """``POST /v1/completions``; with ``suffix``, the model fills in between prompt and suffix."""

    prompt: str | list[str]
    suffix: str | None = None
    language: str | None = None  # Geex: tag line and stop rules of this language
    max_tokens: int = 16
    echo: bool = False
    logprobs: int | None = None
    best_of: int | None = None

    @property
    def prompts(self) -> list[str]:
        return [self.prompt] if isinstance(self.prompt, str) else list(self.prompt)


class ChatMessage(BaseModel):
    """One message; ``content`` is text or OpenAI's list of parts (text parts only here)."""

    model_config = ConfigDict(extra="ignore")

    role: str
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None


class ChatCompletionRequest(_Request):
    """``POST /v1/chat/completions``."""

    messages: list[ChatMessage]
    max_tokens: int | None = None
    max_completion_tokens: int | None = None  # the newer name of max_tokens
    logprobs: bool | None = None
    top_logprobs: int | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    response_format: dict[str, Any] | None = None

    @property
    def token_limit(self) -> int | None:
        """The answer's token bound: ``max_completion_tokens``, else ``max_tokens``, else none."""
        if self.max_completion_tokens is not None:
            return self.max_completion_tokens
        return self.max_tokens

    def message_dicts(self) -> list[dict[str, str]]:
        """``{"role", "content"}`` with the content as plain text, as chat templates take it."""
        messages = []
        for i, message in enumerate(self.messages):
            content = message.content
            if isinstance(content, list):
                texts = []
                for part in content:
                    if part.get("type") != "text" or not isinstance(part.get("text"), str):
                        raise ApiError(
                            f"messages[{i}]: only text content parts are served, got a "
                            f"{part.get('type')!r} part",
                            param="messages",
                        )
                    texts.append(part["text"])
                content = "".join(texts)
            # "developer" is OpenAI's newer name for the system message.
            role = "system" if message.role == "developer" else message.role
            messages.append({"role": role, "content": content or ""})
        return messages


def check_common(request: _Request, served_name: str) -> None:
    """Refuse values the model cannot serve, with a message that says what to change."""
    if request.model is not None and request.model != served_name:
        raise ApiError(
            f"the model {request.model!r} is not served here; this server serves {served_name!r}",
            status=404,
            param="model",
            code="model_not_found",
        )
    if not 0 <= request.temperature <= MAX_TEMPERATURE:
        raise ApiError(
            f"temperature must be from 0 (greedy) to {MAX_TEMPERATURE:g}, "
            f"got {request.temperature}",
            param="temperature",
        )
    if not 0 < request.top_p <= 1:
        raise ApiError(f"top_p must be in (0, 1], got {request.top_p}", param="top_p")
    if request.top_k < 0:
        raise ApiError(f"top_k must be >= 0 (0 keeps every token), got {request.top_k}",
                       param="top_k")  # fmt: skip
    if request.n < 1:
        raise ApiError(f"n must be >= 1, got {request.n}", param="n")
    if request.n > 1 and request.temperature < GREEDY_BELOW:
        raise ApiError(
            f"n={request.n} with temperature {request.temperature:g} would return {request.n} "
            f"identical greedy completions (below {GREEDY_BELOW:g} decoding is greedy): set "
            "temperature > 0 to sample, or n to 1",
            param="n",
        )
    stops = request.stop_sequences
    if any(s == "" for s in stops):
        raise ApiError("stop sequences must not be empty strings", param="stop")
    # Every stop sequence is matched against the text's end at every step: bound the work.
    if len(stops) > MAX_STOP_SEQUENCES or any(len(s) > MAX_STOP_CHARS for s in stops):
        raise ApiError(
            f"at most {MAX_STOP_SEQUENCES} stop sequences of at most {MAX_STOP_CHARS} "
            f"characters each, got {len(stops)} (the longest {max(map(len, stops))})",
            param="stop",
        )
    _refuse_unsupported(
        {
            "presence_penalty": request.presence_penalty not in (None, 0),
            "frequency_penalty": request.frequency_penalty not in (None, 0),
            "logit_bias": bool(request.logit_bias),
        }
    )


def check_completion(request: CompletionRequest, served_name: str) -> None:
    check_common(request, served_name)
    if not request.prompts:
        raise ApiError("prompt is an empty list", param="prompt")
    if any(p == "" for p in request.prompts) and request.language is None and not request.suffix:
        raise ApiError("prompt is empty: give some text to continue", param="prompt")
    if request.max_tokens < 1:
        raise ApiError(f"max_tokens must be >= 1, got {request.max_tokens}", param="max_tokens")
    if request.suffix is not None and request.echo:
        raise ApiError("echo cannot be combined with suffix", param="echo")
    if request.language is not None:
        try:
            get_language(request.language)
        except GeexError as err:
            raise ApiError(str(err), param="language") from None
    _refuse_unsupported(
        {
            "logprobs": request.logprobs not in (None, 0),
            "best_of": request.best_of not in (None, 1, request.n),
        }
    )


def check_chat(request: ChatCompletionRequest, served_name: str) -> None:
    check_common(request, served_name)
    if not request.messages:
        raise ApiError("messages is an empty list", param="messages")
    limit = request.token_limit
    if limit is not None and limit < 1:
        raise ApiError(f"max_tokens must be >= 1, got {limit}", param="max_tokens")
    choice = request.tool_choice
    forced = isinstance(choice, dict) or choice == "required"
    kind = (request.response_format or {}).get("type", "text")
    _refuse_unsupported(
        {
            "logprobs": bool(request.logprobs),
            "top_logprobs": bool(request.top_logprobs),
            # "auto" and "none" may answer in text, which is what a served code model does.
            "tool_choice": forced,
            "response_format": kind != "text",
        }
    )


def _refuse_unsupported(asked: dict[str, bool]) -> None:
    for field, value in asked.items():
        if value:
            raise ApiError(f"{field} is not supported by the Geex server", param=field)


def new_id(prefix: str = "cmpl") -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


def usage(prompt_tokens: int, completion_tokens: int) -> dict:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def response_body(
    completion_id: str,
    model: str,
    texts: list[str],
    finish_reasons: list[str],
    prompt_tokens: int,
    completion_tokens: int,
    *,
    chat: bool,
) -> dict:
    """The non-streamed answer: one choice per (prompt, sample), prompt-major; a chat's
    choices are assistant messages."""

    def choice(index: int, text: str, reason: str) -> dict:
        if not chat:
            return text_choice(index, text, reason)
        message = {"role": "assistant", "content": text}
        return {"index": index, "message": message, "logprobs": None, "finish_reason": reason}

    return {
        "id": completion_id,
        "object": "chat.completion" if chat else "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            choice(i, text, reason)
            for i, (text, reason) in enumerate(zip(texts, finish_reasons, strict=True))
        ],
        "usage": usage(prompt_tokens, completion_tokens),
    }


def stream_event(
    completion_id: str,
    model: str,
    choices: list[dict],
    *,
    chat: bool,
    usage_fields: dict | None = None,
    with_usage: bool = False,
) -> str:
    """One server-sent event of a streamed completion or chat completion. ``with_usage``
    (``stream_options.include_usage``): every chunk has ``usage``, null but in the last, as
    OpenAI's do."""
    chunk = {
        "id": completion_id,
        "object": "chat.completion.chunk" if chat else "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": choices,
    }
    if with_usage or usage_fields is not None:
        chunk["usage"] = usage_fields
    return f"data: {json.dumps(chunk)}\n\n"


def text_choice(index: int, text: str, finish_reason: str | None = None) -> dict:
    return {"index": index, "text": text, "logprobs": None, "finish_reason": finish_reason}


def delta_choice(index: int, delta: dict, finish_reason: str | None = None) -> dict:
    return {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish_reason}


def error_event(message: str, kind: str = "server_error") -> str:
    """An error inside a stream, whose status line has already gone out."""
    return f"data: {json.dumps(error_body(message, kind=kind))}\n\n"


STREAM_END = "data: [DONE]\n\n"
