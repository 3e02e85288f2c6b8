"""`geex serve`: an OpenAI-compatible completion server for a Geex checkpoint."""

from __future__ import annotations

import argparse
import dataclasses
import sys

from geex.cli.flags import add_config_flags, config_from_args
from geex.errors import GeexError
from geex.model.load_options import LoadOptions


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="serve a model over the OpenAI completions API",
        description="Serve a Geex checkpoint at /v1/completions (OpenAI's completions API, with "
        "streaming) and /v1/models. The extra request field 'language' adds CodeGeeX's language "
        "tag line and the language's stop rules. Requests are decoded one at a time.",
    )
    parser.add_argument("--model", required=True, metavar="DIR", help="Geex checkpoint folder")
    add_config_flags(parser, LoadOptions)
    parser.add_argument(
        "--model-name", metavar="NAME", help="name clients ask for (default: the folder's name)"
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    parser.add_argument(
        "--log-level", choices=["debug", "info", "warning", "error"], default="info"
    )
    parser.set_defaults(handler=_serve)


def _serve(args: argparse.Namespace) -> int:
    try:
        from geex.serve.server import (
            ServedModel,
            create_app,
            listening_socket,
            run_server,
            server_url,
        )
    except ModuleNotFoundError as err:
        if err.name in ("fastapi", "uvicorn", "starlette", "pydantic"):
            raise GeexError(
                f"geex serve needs {err.name}: reinstall geex (scripts/setup.sh)"
            ) from None
        raise
    if not 0 <= args.port <= 65535:
        raise GeexError(f"--port must be in 0..65535, got {args.port}")
    sock = listening_socket(args.host, args.port)  # before loading: a taken port fails fast
    options = config_from_args(LoadOptions, args)
    served = ServedModel.load(args.model, **dataclasses.asdict(options), name=args.model_name)
    device = next(served.model.parameters()).device
    print(
        f"geex serve: {served.name} on {device}, at {server_url(sock)}/v1 "
        "(one request at a time; Ctrl+C stops)",
        flush=True,
        file=sys.stderr,
    )
    run_server(create_app(served), sock, log_level=args.log_level)
    return 0
