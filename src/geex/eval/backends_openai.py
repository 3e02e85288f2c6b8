"""Any OpenAI-compatible completions endpoint as an evaluation backend.

vLLM, llama.cpp's server, Ollama, OpenAI itself, or ``geex serve``: the client speaks plain
``POST {base_url}/completions`` with the standard library, one request per prompt, several in
flight at once (``concurrency``), so that a server which batches across requests (vLLM) can.

What servers differ in, and how it is met:

- ``n``: some refuse ``n > 1`` (a 400) or ignore it (fewer choices come back); the client
  then asks again, one completion per request, until it has ``n``.
- ``stop``: OpenAI takes at most four sequences, so at most the language's first four are
  sent; the harness cuts every completion with the full rule anyway.
- Transient failures (429, 5xx, a refused or dropped connection, a timeout) are retried with
  exponential backoff, honouring ``Retry-After``; other errors stop the run with the
  server's message.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from geex.errors import GeexError
from geex.eval.backends import Sampling, StopRule

log = logging.getLogger("geex.eval.openai")

MAX_STOP_SEQUENCES = 4  # OpenAI's limit
MAX_BACKOFF_SECONDS = 60.0


class RefusedRequest(GeexError):
    """The server answered 400: the request itself is wrong for it (e.g. n > 1)."""


class OpenAIBackend:
    """Completions from ``{base_url}/completions`` for the model ``model``."""

    def __init__(
        self,
        base_url: str,
        model: str | None = None,
        *,
        api_key: str | None = None,
        timeout: float = 600.0,
        retries: int = 5,
        backoff: float = 1.0,
        concurrency: int = 8,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise GeexError(f"the endpoint URL {base_url!r} must start with http:// or https://")
        if concurrency < 1 or retries < 0 or not 0 < timeout < math.inf:  # NaN too
            raise GeexError("concurrency must be >= 1, retries >= 0 and the timeout positive")
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.timeout, self.retries, self.backoff = timeout, retries, backoff
        self.concurrency = concurrency
        self.accepts_n = True  # until the server shows otherwise
        self.model = model or self.only_model()

    def only_model(self) -> str:
        """The model the server lists, when it lists exactly one (as ``geex serve`` does)."""
        listed = [m.get("id") for m in self._request("GET", "/models").get("data", [])]
        if len(listed) != 1:
            shown = ", ".join(map(str, listed[:10])) or "none"
            raise GeexError(
                f"{self.base_url}/models lists {len(listed)} models ({shown}): name one"
            )
        return listed[0]

    def generate(
        self, prompts: Sequence[str], stops: Sequence[StopRule], sampling: Sampling
    ) -> list[list[str]]:
        with ThreadPoolExecutor(min(self.concurrency, len(prompts)) or 1) as pool:
            jobs = [
                pool.submit(self.samples, p, s, sampling)
                for p, s in zip(prompts, stops, strict=True)
            ]
            return [job.result() for job in jobs]

    def infill(
        self, holes: Sequence[tuple[str, str]], stops: Sequence[StopRule], sampling: Sampling
    ) -> list[list[str]]:
        """Middles of (prefix, suffix) holes: the prefix as the prompt and the ``suffix``
        field, which the server puts in its model's FIM format (or refuses)."""
        with ThreadPoolExecutor(min(self.concurrency, len(holes)) or 1) as pool:
            jobs = [
                pool.submit(self.samples, prefix, stop, sampling, suffix)
                for (prefix, suffix), stop in zip(holes, stops, strict=True)
            ]
            return [job.result() for job in jobs]

    def samples(
        self, prompt: str, stop: StopRule, sampling: Sampling, suffix: str | None = None
    ) -> list[str]:
        """``sampling.n`` completions of one prompt, in as few requests as the server allows."""
        texts: list[str] = []
        while len(texts) < sampling.n:
            wanted = sampling.n - len(texts) if self.accepts_n else 1
            try:
                got = self.complete(prompt, stop, sampling, wanted, suffix)
            except RefusedRequest as err:
                if wanted == 1:
                    raise
                log.warning(
                    "%s refused n=%d (%s); asking one at a time", self.base_url, wanted, err
                )
                self.accepts_n = False
                continue
            if not got:
                raise GeexError(f"{self.base_url}/completions answered with no choices")
            if len(got) < wanted:
                self.accepts_n = False  # it ignores n: one at a time from now on
            texts.extend(got[:wanted])
        return texts

    def complete(
        self, prompt: str, stop: StopRule, sampling: Sampling, n: int, suffix: str | None = None
    ) -> list[str]:
        body = {
            "model": self.model,
            "prompt": prompt,
            "max_tokens": sampling.max_new_tokens,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "n": n,
        }
        # vLLM's field (and geex serve's), not OpenAI's: sent only when asked for, 1 included
        if sampling.repetition_penalty is not None:
            body["repetition_penalty"] = sampling.repetition_penalty
        if suffix is not None:
            body["suffix"] = suffix
        if stop.sequences:
            body["stop"] = list(stop.sequences[:MAX_STOP_SEQUENCES])
        answer = self._request("POST", "/completions", body)
        choices = answer.get("choices")
        if not isinstance(choices, list):
            raise GeexError(f"{self.base_url}/completions answered without choices: {answer}")
        ordered = sorted(choices, key=lambda c: c.get("index", 0))
        return [c.get("text") or "" for c in ordered]

    def _request(self, method: str, path: str, body: dict | None = None) -> dict:
        """One API call, retried on what may pass: 429, 5xx, connection failures, timeouts."""
        url = self.base_url + path
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        for attempt in range(self.retries + 1):
            request = urllib.request.Request(url, data=data, headers=headers, method=method)
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    return json.loads(response.read())
            except urllib.error.HTTPError as err:
                message = _error_message(err)
                if err.code == 400:
                    raise RefusedRequest(f"{url}: {message}") from None
                if err.code != 429 and err.code < 500:
                    raise GeexError(f"{url}: HTTP {err.code}: {message}") from None
                failure, wait = f"HTTP {err.code}: {message}", _retry_after(err)
            except (urllib.error.URLError, ConnectionError, TimeoutError) as err:
                reason = getattr(err, "reason", err)
                failure, wait = f"{type(reason).__name__}: {reason}", None
            except json.JSONDecodeError as err:
                raise GeexError(f"{url} answered with something that is not JSON: {err}") from None
            if attempt == self.retries:
                break
            delay = wait if wait is not None else self.backoff * 2**attempt
            delay = min(delay, MAX_BACKOFF_SECONDS)
            log.warning(
                "%s: %s; retry %d/%d in %.1f s", url, failure, attempt + 1, self.retries, delay
            )
            time.sleep(delay)
        raise GeexError(f"{url}: {failure} (after {self.retries + 1} tries)")


def _error_message(err: urllib.error.HTTPError) -> str:
    """The message of an OpenAI-style error body, or the start of whatever came back."""
    try:
        raw = err.read().decode(errors="replace")
    except OSError:
        return err.reason or ""
    try:
        return str(json.loads(raw)["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return raw.strip()[:300] or str(err.reason)


def _retry_after(err: urllib.error.HTTPError) -> float | None:
    value = err.headers.get("Retry-After") if err.headers else None
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None  # an HTTP date: fall back to the backoff


def api_key_from_env(variable: str = "OPENAI_API_KEY") -> str | None:
    """The API key in ``variable``, if set (local servers usually need none)."""
    return os.environ.get(variable) or None
