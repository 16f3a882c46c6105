"""The CLI's argument parser and how failures read: one stderr line, exit codes 0/1/2/130."""

from __future__ import annotations

import argparse
from typing import Any, NoReturn

from bridge.errors import BridgeError, Unauthorized

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
