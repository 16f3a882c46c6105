"""Where the CLI finds the service and its key: flags, environment, the stored login (0600 file)."""

from __future__ import annotations

import argparse
import contextlib
import getpass
import json
import os
import socket
import sys
from pathlib import Path
from typing import Any

from bridge.config import DEFAULT_SERVICE_URL as DEFAULT_URL
from bridge.config import ClientSettings
from bridge.sdk.credentials import credentials_path, read_credentials

# Read by bridge.config.ClientSettings (shared with the SDK); named here for help texts.
URL_ENV, KEY_ENV, USER_ENV, PASSWORD_ENV = (
    "BRIDGE_URL", "BRIDGE_API_KEY", "BRIDGE_USERNAME", "BRIDGE_PASSWORD"
)


def load_credentials() -> dict[str, Any]:
    try:
        return read_credentials()
    except (OSError, ValueError) as exc:
        from local_api.cli.parser import UsageError

        raise UsageError(f"cannot read {credentials_path()}: {exc}; remove it and run "
                         "`bridge login`") from None


def save_credentials(data: dict[str, Any]) -> Path:
    """Write atomically, readable by this user only (the directory 0700, the file 0600)."""
    path = credentials_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(path.name + ".tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(data, handle, indent=2)
    os.replace(tmp, path)
    return path


def normalize_url(url: str) -> str:
    """The service root, as the SDK names it (so `.../api/v1` and `...` share one login)."""
    from bridge.sdk.client import normalize_base_url

    url = url.strip()
    if not url.startswith(("http://", "https://")):
        from local_api.cli.parser import UsageError

        raise UsageError(f"--url must start with http:// or https:// (got {url!r})")
    return normalize_base_url(url)


def resolve_url(args: argparse.Namespace) -> str:
    """--url, then $BRIDGE_URL, then the service of the last `bridge login`, then the default."""
    from_env = ClientSettings.from_env().url
    url = getattr(args, "url", None) or (from_env if from_env != DEFAULT_URL else None)
    if not url:
        url = load_credentials().get("default_url") or DEFAULT_URL
    args.resolved_url = normalize_url(url)
    return str(args.resolved_url)


def resolve_key(args: argparse.Namespace, url: str) -> str | None:
    """--api-key, then $BRIDGE_API_KEY, then the key stored by `bridge login` for ``url``."""
    key = getattr(args, "api_key", None) or ClientSettings.from_env().api_key
    if key:
        return str(key)
    stored = load_credentials()["servers"].get(url) or {}
    return stored.get("api_key")


def client_for(args: argparse.Namespace) -> Any:
    """An SDK client for the resolved service; says what to run when there are no credentials."""
    from bridge.errors import Unauthorized
    from bridge.sdk.client import Client

    url = resolve_url(args)
    args.needs_auth = True
    key = resolve_key(args, url)
    client = Client(base_url=url, api_key=key)
    if not key:
        with client:
            client.system.health()  # a service that is down is the first thing to say
        raise Unauthorized(
            f"not logged in to {url}: run `bridge login --url {url}` "
            f"(or set {KEY_ENV}, or pass --api-key)"
        )
    return client


def read_password(args: argparse.Namespace, *, confirm: bool = False) -> str:
    """From --password-stdin, $BRIDGE_PASSWORD or a prompt: never from the command line."""
    from local_api.cli.parser import UsageError

    if getattr(args, "password_stdin", False):
        password = sys.stdin.readline().rstrip("\r\n")
    elif env_password := ClientSettings.from_env().password:
        password = env_password
    elif sys.stdin.isatty():
        password = getpass.getpass("Password: ")
        if confirm and getpass.getpass("Password (again): ") != password:
            raise UsageError("the two passwords differ")
    else:
        raise UsageError(f"no password: use --password-stdin or set {PASSWORD_ENV}")
    if not password:
        raise UsageError("the password is empty")
    return password


def read_username(args: argparse.Namespace) -> str:
    from local_api.cli.parser import UsageError

    name = args.username or ClientSettings.from_env().username
    if not name and sys.stdin.isatty() and not args.password_stdin:
        name = input("Username: ").strip()
    if not name:
        raise UsageError(f"no username: pass --username or set {USER_ENV}")
    return str(name)


def login(args: argparse.Namespace) -> int:
    """Log in with a password, create an API key for this machine, store it for later commands.

    The password session is logged out once the key exists, and a key stored earlier for the
    same service is revoked: one live key per machine and service.
    """
    from bridge.errors import BridgeError
    from bridge.sdk.client import Client

    url = resolve_url(args)
    username = read_username(args)
    password = read_password(args)
    name = args.key_name or f"bridge-cli@{socket.gethostname()}"[:100]
    with Client(base_url=url, username=username, password=password) as client:
        created = client.auth.create_api_key(name)
        with contextlib.suppress(BridgeError):
            client.auth.logout()
    data = load_credentials()
    previous = data["servers"].get(url)
    data["servers"][url] = {"api_key": created["key"], "key_id": created["id"],
                            "username": username}
    data["default_url"] = url
    path = save_credentials(data)
    if previous and previous.get("key_id") and previous.get("api_key"):
        with contextlib.suppress(BridgeError), Client(
            base_url=url, api_key=previous["api_key"]
        ) as old:
            old.auth.revoke_api_key(previous["key_id"])
    print(f"Logged in to {url} as {username}; API key {created['prefix']}… saved in {path}")
    return 0


def logout(args: argparse.Namespace) -> int:
    """Revoke the stored key on the service (when reachable) and forget it here."""
    from bridge.errors import BridgeError
    from bridge.sdk.client import Client

    url = resolve_url(args)
    data = load_credentials()
    stored = data["servers"].pop(url, None)
    if stored is None:
        print(f"Not logged in to {url}; nothing to do")
        return 0
    note = "revoked"
    try:
        with Client(base_url=url, api_key=stored["api_key"]) as client:
            client.auth.revoke_api_key(stored["key_id"])
    except BridgeError as exc:
        note = f"not revoked on the service ({exc.message})"
    if data.get("default_url") == url:
        data.pop("default_url")
    save_credentials(data)
    print(f"Logged out of {url}; the API key was {note}")
    return 0


def add_service_options(parser: argparse.ArgumentParser, *, key: bool = True) -> None:
    """--url and --api-key, shared by every command that talks to the service."""
    parser.add_argument(
        "--url", help=f"the service (default ${URL_ENV}, else the last `bridge login`, "
        f"else {DEFAULT_URL})",
    )
    if not key:
        return
    parser.add_argument(
        "--api-key", help=f"API key (default ${KEY_ENV}, else the one `bridge login` stored; "
        "prefer those: arguments are visible to other local users)",
    )


def register(sub: Any) -> None:
    p = sub.add_parser(
        "login", help="log in and store an API key for this machine",
        description="Log in with your username and password, create an API key on the "
        f"service and store it (0600) in {credentials_path()}. Later commands use it. "
        f"The password comes from a prompt, --password-stdin or ${PASSWORD_ENV}.",
    )
    add_service_options(p, key=False)
    p.add_argument("--username", help=f"(default ${USER_ENV}, else a prompt)")
    p.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    p.add_argument("--key-name", help="name of the API key (default bridge-cli@HOSTNAME)")
    p.set_defaults(func=login)
    p = sub.add_parser(
        "logout", help="revoke and forget the stored API key",
        description="Revoke the API key `bridge login` stored for the service and forget it.",
    )
    add_service_options(p, key=False)
    p.set_defaults(func=logout)
