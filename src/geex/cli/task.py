"""`geex task VERB`: ask a running `geex serve` for one of the assistant's tasks.

The editor's flow from a terminal: the code comes from a file (or stdin, as ``-``), the answer
is streamed to stdout, and only the answer, so that the command works as an editor's filter
(``:'<,'>!geex task translate - -l python --to go`` in Vim). The verbs are the server's
``/v1/tasks/{task}`` endpoints.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path

from geex.cli.generate import _utf8_text
from geex.errors import GeexError

DEFAULT_URL = "http://127.0.0.1:8000"


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "task",
        help="ask a running geex serve to translate, explain, comment, complete or answer",
        description="Run one of the assistant's tasks on a running 'geex serve' and print the "
        "answer as it is generated (its end and token count go to stderr, unless stderr goes "
        "where the answer goes, as in an editor's filter). FILE may be '-' for stdin; the "
        "language is found from FILE's name unless --language names it. "
        "Examples: geex task explain app.py; geex task infill app.py (the gap marked <FILL>); "
        "geex task translate app.py --to cpp. 'geex task VERB --help' lists a verb's options.",
    )
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", required=True)

    def verb(name: str, help: str, *, file: bool = True) -> argparse.ArgumentParser:
        sub = verbs.add_parser(name, help=help, description=help)
        if file:
            sub.add_argument("file", metavar="FILE", help="the code ('-': read stdin)")
        sub.add_argument(
            "--language", "-l", metavar="LANG",
            help="language of the code: python, cpp, java, js, go, ... (default: from FILE's name)",
        )  # fmt: skip
        sub.add_argument("--url", default=DEFAULT_URL, help=f"the server (default {DEFAULT_URL})")
        sub.add_argument(
            "--api-key", metavar="KEY", default=os.environ.get("GEEX_API_KEY"),
            help="the server's key, sent as 'Authorization: Bearer KEY' (default: $GEEX_API_KEY)",
        )  # fmt: skip
        sub.add_argument(
            "--max-tokens", type=int, metavar="N", help="most new tokens (default: the task's own)"
        )
        sub.add_argument(
            "--temperature", type=float, default=0.0, metavar="T",
            help="sampling temperature (default 0: greedy, the same answer each time)",
        )  # fmt: skip
        sub.add_argument(
            "--no-stream", action="store_true", help="print the answer at the end, not as it comes"
        )
        sub.set_defaults(handler=_run, task=name)
        return sub

    def natural(sub: argparse.ArgumentParser) -> None:
        sub.add_argument(
            "--lang", choices=("en", "zh"), default="en",
            help="the answer's language: en (default) or zh",
        )  # fmt: skip

    verb("complete", "continue the code in FILE")
    infill = verb("infill", "fill the gap marked in FILE")
    infill.add_argument("--cursor", default="<FILL>", help="the gap's marker (default <FILL>)")
    code = verb("comment-to-code", "write code that does what a comment says", file=False)
    code.add_argument("comment", help="what the code should do")
    translate = verb("translate", "translate the code in FILE into another language")
    translate.add_argument("--to", required=True, metavar="LANG", help="the target language")
    natural(verb("explain", "explain the code in FILE"))
    natural(verb("comment", "add a comment to each line of the code in FILE"))
    ask = verb("ask", "answer a question, about the code in --context if given", file=False)
    ask.add_argument("question", help="the question, in quotes")
    ask.add_argument("--context", metavar="FILE", help="code the question is about ('-': stdin)")
    natural(ask)


def _read(path: str) -> str:
    if path == "-":
        stdin = getattr(sys.stdin, "buffer", None)  # a test's replacement may hold text only
        return _utf8_text(stdin.read(), "stdin") if stdin else sys.stdin.read()
    try:
        return _utf8_text(Path(path).read_bytes(), path)
    except OSError as err:
        raise GeexError(f"cannot read {path}: {err.strerror or err}") from None


def _language(args: argparse.Namespace, path: str | None, code: str) -> str | None:
    if args.language:
        return args.language
    if path and path != "-":
        from geex.languages import detect_language

        found = detect_language(path, code.split("\n", 1)[0])
        if found is not None:
            return found.key
    return None


def task_body(args: argparse.Namespace) -> dict:
    """The request body of ``args.task``, from the files and flags."""
    body: dict = {}
    path = getattr(args, "file", None) or getattr(args, "context", None)
    code = _read(path) if path else ""
    language = _language(args, path, code)
    needs_language = args.task in ("comment-to-code", "translate", "explain", "comment")
    if needs_language and language is None:
        raise GeexError("name the code's language with --language (it is not known from FILE)")
    if args.task == "infill":
        if args.cursor not in code:
            raise GeexError(f"{args.file} has no {args.cursor} marking the gap to fill")
        body["prefix"], body["suffix"] = code.split(args.cursor, 1)
    elif args.task == "complete":
        body["prefix"] = code
    elif args.task == "comment-to-code":
        body["comment"] = args.comment
    elif args.task == "ask":
        body.update(question=args.question, context=code)
    else:
        body["code"] = code
    if args.task == "translate":
        body["target"] = args.to
    if hasattr(args, "lang"):
        body["natural_language"] = args.lang
    if language is not None:
        body["language"] = language
    if args.max_tokens is not None:
        body["max_tokens"] = args.max_tokens
    body["temperature"] = args.temperature
    body["stream"] = not args.no_stream
    return body


def _error_message(err: urllib.error.HTTPError) -> str:
    try:
        return json.loads(err.read())["error"]["message"]
    except (ValueError, KeyError, TypeError):
        return err.reason or "no message"


def _run(args: argparse.Namespace) -> int:
    body = task_body(args)
    # `geex serve` prints its OpenAI base URL (.../v1): the tasks are beside it, not under it.
    base = args.url.rstrip("/").removesuffix("/v1")
    if not base.startswith(("http://", "https://")):
        raise GeexError(f"--url must be an http:// or https:// URL, got {args.url!r}")
    try:
        request = urllib.request.Request(
            f"{base}/v1/tasks/{args.task}", data=json.dumps(body).encode(), method="POST"
        )
    except ValueError as err:
        raise GeexError(f"--url {args.url!r} is not a URL: {err}") from None
    request.add_header("Content-Type", "application/json")
    if args.api_key:
        request.add_header("Authorization", f"Bearer {args.api_key}")
    try:
        with urllib.request.urlopen(request, timeout=600) as response:
            return _print_stream(response) if body["stream"] else _print_whole(response)
    except urllib.error.HTTPError as err:
        raise GeexError(f"the server answered {err.code}: {_error_message(err)}") from None
    except urllib.error.URLError as err:
        if isinstance(err.reason, (ConnectionResetError, ConnectionAbortedError, BrokenPipeError)):
            # lost while the request was sent: the server was reached
            raise GeexError(f"the connection to {args.url} broke: {err.reason}") from None
        raise GeexError(
            f"cannot reach a server at {args.url}: {getattr(err.reason, 'strerror', None) or err.reason} "
            "(start one with geex serve, or give --url)"
        ) from None
    except BrokenPipeError:
        raise  # stdout's reader left (`| head`): geex's own handler ends quietly
    except http.client.InvalidURL as err:  # a port that is not a number
        raise GeexError(f"--url {args.url!r} is not a usable URL: {err}") from None
    except (ConnectionError, TimeoutError, http.client.IncompleteRead) as err:
        raise GeexError(f"the connection to {args.url} broke: {err}") from None
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError,
            http.client.HTTPException):  # fmt: skip
        raise GeexError(
            f"the server at {args.url} did not answer as `geex serve` does: is it one?"
        ) from None


def _stderr_joins_the_answer() -> bool:
    """Whether stderr is the file or pipe stdout goes to, and not a terminal: an editor's
    filter (Vim's ``:'<,'>!geex task ...`` runs it with ``2>&1``), where a status line would
    land in the buffer with the answer."""
    try:
        if sys.stderr.isatty():
            return False
        return os.path.samestat(os.fstat(sys.stdout.fileno()), os.fstat(sys.stderr.fileno()))
    except (OSError, ValueError):  # a stream with no file behind it (io.UnsupportedOperation)
        return False


def _print_status(finish_reason: str, tokens: int) -> None:
    """The answer's end and its token count, on stderr, unless that would join the answer."""
    if not _stderr_joins_the_answer():
        print(f"[{finish_reason}, {tokens} tokens]", file=sys.stderr)


def _print_whole(response) -> int:
    answer = json.loads(response.read())
    print(answer["text"])
    _print_status(answer["finish_reason"], answer["usage"]["completion_tokens"])
    return 0


def _print_stream(response) -> int:
    last, ended = "", False
    try:
        for raw in response:
            line = raw.decode("utf-8").rstrip("\r\n")
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            event = json.loads(line.removeprefix("data: "))
            if "error" in event:
                raise GeexError(f"the server failed: {event['error']['message']}")
            if "text" in event:
                last = event["text"]
                sys.stdout.write(last)
                sys.stdout.flush()
            elif "finish_reason" in event:
                ended = True
                if not last.endswith("\n"):
                    sys.stdout.write("\n")
                _print_status(event["finish_reason"], event["usage"]["completion_tokens"])
        if not ended:
            raise GeexError("the server closed the stream before the answer ended")
    except BrokenPipeError:
        raise  # stdout is gone: nothing more can be written to it
    except Exception:
        if last and not last.endswith("\n"):  # the error starts a line of its own
            sys.stdout.write("\n")
        raise
    return 0
