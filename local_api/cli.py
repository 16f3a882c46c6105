"""The `bridge` command: assembles the subcommands and turns every failure into one stderr line."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from bridge.errors import BridgeError, Unauthorized, ValidationError

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

EPILOG = """\
exit codes:
  0    success
  1    runtime error: service unreachable, credentials refused, not found, failed
  2    usage error: bad flags or input the service refused as invalid
  130  interrupted (Ctrl-C)
errors are one line on stderr: "bridge: error: ..."
"""


class UsageError(Exception):
    """A command line that cannot be run as written (exit code 2)."""


class Parser(argparse.ArgumentParser):
    """argparse, but usage errors become one stderr line instead of usage text and exit(2)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        kwargs.setdefault("epilog", EPILOG)
        kwargs.setdefault("allow_abbrev", False)  # `--password x` must not mean --password-stdin
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see `{self.prog} --help`)")

    def parse_known_args(self, *args: Any, **kwargs: Any) -> Any:
        namespace, extras = super().parse_known_args(*args, **kwargs)
        if not hasattr(namespace, "prog"):  # the innermost subcommand answers first
            namespace.prog = self.prog
        return namespace, extras

    def parse_args(self, *args: Any, **kwargs: Any) -> Any:
        namespace, extras = self.parse_known_args(*args, **kwargs)
        if extras:
            raise UsageError(
                f"unrecognized arguments: {' '.join(extras)} (see `{namespace.prog} --help`)"
            )
        return namespace


def build_parser() -> Parser:
    from local_api import (
        cli_admin,
        cli_chat,
        cli_connect,
        cli_credentials,
        cli_models,
        cli_server,
    )

    parser = Parser(
        prog="bridge",
        description="Compute Bridge: one LLM API, on a GPU worker or this machine.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (cli_server, cli_credentials, cli_chat, cli_models, cli_admin, cli_connect):
        module.register(sub)
    return parser


def one_line(text: str) -> str:
    return " ".join(str(text).split())


def describe(exc: BridgeError, args: argparse.Namespace | None) -> str:
    """The message a user reads for an error the service (or the SDK) raised."""
    url = getattr(args, "resolved_url", None) or getattr(args, "url", None)
    needs_auth = getattr(args, "needs_auth", False)
    if isinstance(exc, Unauthorized) and needs_auth and url and "bridge login" not in exc.message:
        return (f"the service refused the credentials ({exc.message}); "
                f"run `bridge login --url {url}`")
    detail = exc.details.get("model_id") if isinstance(exc.details, dict) else None
    if exc.code == "MODEL_NOT_FOUND" and detail and str(detail) not in exc.message:
        return f"{exc.message}: {detail} (see `bridge models list`)"
    return exc.message


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
