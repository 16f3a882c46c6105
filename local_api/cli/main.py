"""The `bridge` command: assembles the subcommands and turns every failure into one stderr line."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from collections.abc import Sequence

from bridge.errors import BridgeError, ValidationError
from local_api.cli.parser import (
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    Parser,
    UsageError,
    describe,
    one_line,
)


def build_parser() -> Parser:
    from local_api.cli import admin, chat, connect, credentials, database, models, server

    parser = Parser(
        prog="bridge",
        description="Compute Bridge: one LLM API, on a GPU worker or this machine.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (server, credentials, chat, models, admin, connect, database):
        module.register(sub)
    return parser





def run(argv: Sequence[str] | None = None) -> int:
    args: argparse.Namespace | None = None
    try:
        args = build_parser().parse_args(argv)
        if getattr(args, "log", False):
            logging.basicConfig(
                level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s"
            )
        return int(args.func(args))
    except UsageError as exc:
        print(f"bridge: error: {one_line(str(exc))}", file=sys.stderr)
        return EXIT_USAGE
    except ValidationError as exc:
        print(f"bridge: error: {one_line(describe(exc, args))}", file=sys.stderr)
        return EXIT_USAGE
    except BridgeError as exc:
        print(f"bridge: error: {one_line(describe(exc, args))}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("bridge: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except EOFError:  # Ctrl-D (or an empty stdin) at a prompt
        print("bridge: error: no input: the prompt was answered with end of file", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:  # `bridge chat ... | head`: the reader left, nothing to say
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except OSError as exc:
        print(f"bridge: error: {one_line(str(exc))}", file=sys.stderr)
        return EXIT_ERROR


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; `--help` and `--version` exit 0 through SystemExit."""
    try:
        return run(argv)
    except SystemExit as exc:  # argparse's --help
        return exc.code if isinstance(exc.code, int) else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
