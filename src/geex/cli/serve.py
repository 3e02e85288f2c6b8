"""`geex serve`: a model behind OpenAI's completions and chat APIs (and the other protocols)."""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import os
import sys

from geex.cli.flags import add_config_flags, config_from_args
from geex.errors import GeexError
from geex.model.load_options import LoadOptions
from geex.serve.serve_limits import API_KEY_ENV, ServeLimits


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="serve a model to editors: OpenAI, Tabby, Ollama and llama.cpp APIs, and tasks",
        description="Serve a Geex checkpoint (a converted CodeGeeX-13B is one) or a Hugging "
        "Face model folder over OpenAI's API (/v1/completions, with suffix: fill in the "
        "middle; /v1/chat/completions; /v1/models), Tabby's (/v1/completions with segments), "
        "Ollama's (/api/generate, /api/chat), llama.cpp's (/infill, /completion) and the "
        "assistant's tasks (/v1/tasks/TASK, what 'geex task' calls). All requests share one "
        "engine that decodes up to --max-batch sequences together. GET / lists the routes; "
        "docs/serve.md shows each protocol.",
    )
    parser.add_argument(
        "--model", required=True, metavar="DIR",
        help="a Geex checkpoint or a Hugging Face model folder",
    )  # fmt: skip
    add_config_flags(parser, LoadOptions)
    parser.add_argument(
        "--fim-style", default="auto", metavar="STYLE",
        help="fill-in-the-middle tokens: auto (read from the vocabulary), none, prefix-only "
        "(suffixes dropped), or a style: geex, starcoder, santacoder, codellama, deepseek, "
        "qwen, codegemma",
    )  # fmt: skip
    parser.add_argument(
        "--trust-remote-code", action="store_true",
        help="run the model code a Hugging Face folder carries",
    )  # fmt: skip
    parser.add_argument(
        "--model-name", metavar="NAME", help="name clients ask for (default: the folder's name)"
    )
    parser.add_argument(
        "--host", default="127.0.0.1",
        help="address to listen on (default 127.0.0.1; any other needs --api-key or "
        "--insecure-no-key)",
    )  # fmt: skip
    parser.add_argument(
        "--port",
        type=int,
        default=8000,
        help="port to listen on (default 8000; 0 picks a free one)",
    )
    parser.add_argument(
        "--log-level", choices=["debug", "info", "warning", "error"], default="info",
        help="the server's log (default info: one line per request)",
    )  # fmt: skip
    parser.add_argument(
        "--insecure-no-key",
        action="store_true",
        help="allow a non-loopback --host without --api-key (a proxy in front authenticates)",
    )
    add_config_flags(parser, ServeLimits)
    if os.environ.get(API_KEY_ENV):  # the flag, when given, wins over the environment
        parser.set_defaults(api_key=os.environ[API_KEY_ENV])
    engine = parser.add_argument_group("engine")
    engine.add_argument("--max-batch", type=int, default=16, metavar="N",
                        help="sequences decoded together (KV cache slots; default 16)")  # fmt: skip
    engine.add_argument("--max-queue", type=int, default=64, metavar="N",
                        help="requests waiting before a 429 (default 64)")  # fmt: skip
    parser.set_defaults(handler=_serve)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def start_line(
    name: str, device, url: str, limits: ServeLimits, options: LoadOptions, max_batch: int
) -> str:
    """What the server says when it starts: where, with which key rule, and how the weights
    are held (INT8 weights answer a little differently from bf16: the operator should see it)."""
    key = "API key required" if limits.api_key else "no API key"
    weights = f", {options.quantize.upper()} weights" if options.quantize else ""
    return (
        f"geex serve: {name} on {device}{weights}, at {url}/v1 ({key}; "
        f"{max_batch} sequences at a time; Ctrl+C stops)"
    )


def _serve(args: argparse.Namespace) -> int:
    try:
        from geex.serve.engine import Engine
        from geex.serve.models import load_served_model
        from geex.serve.server import (
            create_app,
            endpoints,
            listening_socket,
            run_server,
            server_url,
        )
        from geex.serve.state import ServerState
    except ModuleNotFoundError as err:
        if err.name in ("fastapi", "uvicorn", "starlette", "pydantic"):
            raise GeexError(
                f"geex serve needs {err.name}: reinstall geex (scripts/setup.sh)"
            ) from None
        raise
    if not 0 <= args.port <= 65535:
        raise GeexError(f"--port must be in 0..65535, got {args.port}")
    limits = config_from_args(ServeLimits, args)
    if not is_loopback(args.host) and not limits.api_key and not args.insecure_no_key:
        raise GeexError(
            f"--host {args.host} lets other machines reach the server, and without --api-key "
            f"(or ${API_KEY_ENV}) anyone there could use the model: set a key, or pass "
            "--insecure-no-key if a proxy in front authenticates"
        )
    for flag in ("max_batch", "max_queue"):
        if getattr(args, flag) < 1:
            raise GeexError(f"--{flag.replace('_', '-')} must be at least 1")
    sock = listening_socket(args.host, args.port)  # before loading: a taken port fails fast
    options = config_from_args(LoadOptions, args)
    model = load_served_model(
        args.model,
        **dataclasses.asdict(options),
        name=args.model_name,
        fim_style=args.fim_style,
        max_slots=args.max_batch,
        trust_remote_code=args.trust_remote_code,
    )
    engine = Engine(model.runner, model.codec, max_batch=args.max_batch, max_queue=args.max_queue)
    try:
        app = create_app(ServerState(model, engine, limits))
        device = getattr(model.runner, "device", "?")
        print(
            start_line(model.name, device, server_url(sock), limits, options, args.max_batch),
            flush=True,
            file=sys.stderr,
        )
        print(f"endpoints: {', '.join(endpoints(app))}", flush=True, file=sys.stderr)
        print(f"playground: {server_url(sock)}/ (in a browser)", flush=True, file=sys.stderr)
        run_server(app, sock, log_level=args.log_level)
    finally:
        engine.close()
    return 0
