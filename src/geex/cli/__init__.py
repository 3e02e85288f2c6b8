"""The ``geex`` command: one subcommand per stage.

Each stage's module here only parses its arguments and calls the library; nothing in this
package computes anything itself.
"""

from __future__ import annotations

import argparse
import importlib
import os
import select
import signal
import sys

from geex import __version__
from geex.errors import GeexError
from geex.os_faults import describe_os_fault

# Subcommand modules, each with ``register(subparsers)``. One that fails to import (a broken
# install, a missing dependency) is still listed, with the error, rather than vanishing from
# ``--help``.
_STAGES = (
    "data",
    "tokenizer",
    "model",
    "convert",
    "train",
    "plot",
    "generate",
    "eval",
    "serve",
    "task",
    "run",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="geex",
        description="Build multilingual code models from 0 to 1: data, tokenizer, model, "
        "training, evaluation, serving.",
    )
    parser.add_argument("--version", action="version", version=f"geex {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for stage in _STAGES:
        try:
            module = importlib.import_module(f"geex.cli.{stage}")
        except Exception as err:  # any import failure is reported, not raised at --help
            _register_broken(subparsers, stage, err)
            continue
        module.register(subparsers)
    return parser


def _register_broken(subparsers, stage: str, err: Exception) -> None:
    """A subcommand whose module failed to import: listed with the cause, and an error to run."""
    cause = f"{type(err).__name__}: {err}"
    if isinstance(err, ModuleNotFoundError) and err.name and not err.name.startswith("geex"):
        # A dependency Geex declares (an import name is not always its package's name, e.g.
        # yaml is PyYAML): reinstalling Geex brings it back.
        cause += " (a dependency is missing: run scripts/setup.sh again, or reinstall geex)"
    parser = subparsers.add_parser(
        stage, help=f"UNAVAILABLE: {cause}", description=f"geex {stage} cannot load: {cause}"
    )
    parser.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)

    def refuse(args: argparse.Namespace) -> int:
        raise GeexError(f"this subcommand cannot load: {cause}")

    parser.set_defaults(handler=refuse)


def environment_fault(err: OSError) -> str | None:
    """One line for an OSError the user fixes on the machine, or None for any other."""
    fault = describe_os_fault(err)
    return None if fault is None else fault + ", then run the command again"


def _stdout_closed() -> bool:
    """Whether stdout is a pipe whose reader has gone (``poll`` reports an error on its write
    end); if so, stdout is pointed at /dev/null, so that Python's flush at exit does not fail
    on the closed pipe again."""
    try:
        fd = sys.stdout.fileno()
        poller = select.poll()
        poller.register(fd, select.POLLOUT)
        broken = any(events & select.POLLERR for _, events in poller.poll(0))
    except (OSError, ValueError):  # no file behind stdout (a test's capture)
        return False
    if broken:
        os.dup2(os.open(os.devnull, os.O_WRONLY), fd)
    return broken


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        result = args.handler(args)
    except GeexError as err:
        print(f"geex {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"geex {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        if not _stdout_closed():
            raise  # a pipe of Geex's own (to a child process): a bug, so its traceback stays
        return 128 + signal.SIGPIPE  # the reader left (`| head`), as a shell counts it
    except OSError as err:
        fault = environment_fault(err)
        if fault is None:
            raise  # not the machine's state: possibly a bug, so its traceback stays
        print(f"geex {args.command}: error: {fault}", file=sys.stderr)
        return 2
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
